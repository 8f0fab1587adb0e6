//! Collect beacons -> Touch (or Identify).
//!
//! * identity: `anonymous_id` and/or `email` (a body with neither is
//!   `MissingField("anonymous_id")`);
//! * utm: the explicit `utm_*` fields or `utm` object when any is set, else the
//!   `utm_*` query parameters of `landing_page`;
//! * gclid / fbclid: explicit, else from the landing page's query;
//! * at: `at` (RFC 3339; unreadable is `InvalidField`), else when the ingest
//!   received it;
//! * a beacon with an email and nothing about a visit (no page, referrer, utm or
//!   click id) is an Identify; everything else is a Touch, whose identity already
//!   carries the email when there is one;
//! * the email counts only when the ingest vouched for it (see the module
//!   documentation): otherwise a touch keeps only its anonymous id, and an
//!   identify (or a beacon with no anonymous id) maps to nothing;
//! * `at` is never later than the receive time (a clock running ahead, or a
//!   beacon dated in the future to stay a customer's last touch, is taken as
//!   received).

use storefold_core::event::{Identify, Touch, Utm, percent_decode};
use storefold_core::{Envelope, Event, Identity};

use super::model::Beacon;
use crate::{MapContext, MapError, RawInput, non_empty};

pub(crate) const TOUCH: &str = "touch";
pub(crate) const IDENTIFY: &str = "identify";

pub(crate) fn identity_of(b: &Beacon) -> Result<Identity, MapError> {
    let identity = Identity::default()
        .with_anonymous_id(b.anonymous_id.as_deref())
        .with_email(b.email.as_deref());
    if identity.is_empty() {
        return Err(MapError::MissingField("anonymous_id".into()));
    }
    Ok(identity)
}

fn utm_of(b: &Beacon) -> Utm {
    let nested = b.utm.as_ref();
    let pick = |flat: &Option<String>, inner: Option<&Option<String>>| {
        non_empty(flat.as_deref()).or_else(|| inner.and_then(|v| non_empty(v.as_deref())))
    };
    let explicit = Utm {
        source: pick(&b.utm_source, nested.map(|u| &u.source)),
        medium: pick(&b.utm_medium, nested.map(|u| &u.medium)),
        campaign: pick(&b.utm_campaign, nested.map(|u| &u.campaign)),
        term: pick(&b.utm_term, nested.map(|u| &u.term)),
        content: pick(&b.utm_content, nested.map(|u| &u.content)),
    };
    if !explicit.is_empty() {
        return explicit;
    }
    b.landing_page
        .as_deref()
        .map(Utm::from_url)
        .unwrap_or_default()
}

/// A query parameter of a URL (first occurrence, decoded).
fn query_param(url: Option<&str>, name: &str) -> Option<String> {
    let (_, query) = url?.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name)
            .then(|| percent_decode(v))
            .filter(|v| !v.is_empty())
    })
}

/// Whether the beacon says anything about a visit.
pub(crate) fn is_visit(b: &Beacon) -> bool {
    non_empty(b.landing_page.as_deref()).is_some()
        || non_empty(b.referrer.as_deref()).is_some()
        || non_empty(b.gclid.as_deref()).is_some()
        || non_empty(b.fbclid.as_deref()).is_some()
        || !utm_of(b).is_empty()
}

pub(crate) fn topic_of(b: &Beacon) -> &'static str {
    if non_empty(b.email.as_deref()).is_some() && !is_visit(b) {
        IDENTIFY
    } else {
        TOUCH
    }
}

pub(crate) fn map(ctx: &MapContext<'_>, input: &RawInput<'_>) -> Result<Vec<Envelope>, MapError> {
    let b: Beacon = crate::parse_json(input.body)?;
    identity_of(&b)?;
    let trusted = super::email_trusted(input.headers);
    if !trusted && (topic_of(&b) == IDENTIFY || non_empty(b.anonymous_id.as_deref()).is_none()) {
        // Only an unvouched email to go on: nothing to fold.
        return Ok(Vec::new());
    }
    let identity = Identity::default()
        .with_anonymous_id(b.anonymous_id.as_deref())
        .with_email(if trusted { b.email.as_deref() } else { None });
    let at = match non_empty(b.at.as_deref()) {
        Some(raw) => crate::parse_time("at", &raw)?.min(input.received_at),
        None => input.received_at,
    };
    let event = if topic_of(&b) == IDENTIFY {
        Event::Identify(Identify { identity, at })
    } else {
        let landing = non_empty(b.landing_page.as_deref());
        Event::Touch(Touch {
            touch_id: non_empty(b.touch_id.as_deref())
                .unwrap_or_else(|| input.event_id.to_string()),
            identity,
            utm: utm_of(&b),
            gclid: non_empty(b.gclid.as_deref())
                .or_else(|| query_param(landing.as_deref(), "gclid")),
            fbclid: non_empty(b.fbclid.as_deref())
                .or_else(|| query_param(landing.as_deref(), "fbclid")),
            landing_page: landing,
            referrer: non_empty(b.referrer.as_deref()),
            cart_token: non_empty(b.cart_token.as_deref()),
            at,
        })
    };
    Ok(vec![Envelope {
        tenant: ctx.tenant.to_string(),
        provider: super::NAME.to_string(),
        event_id: input.event_id.to_string(),
        occurred_at: at,
        event,
    }])
}
