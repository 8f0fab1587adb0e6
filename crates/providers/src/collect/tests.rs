use storefold_core::event::{Identify, Touch, Utm};
use storefold_core::{Envelope, Event};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::{
    Credentials, Headers, Inbound, MapContext, MapError, MapOptions, ProviderKind, RawInput,
    SignError, WebhookRequest,
};

const NOW: OffsetDateTime = datetime!(2025-04-02 9:00 UTC);

const LANDING: &[u8] = include_bytes!("fixtures/touch__landing_utm.json");
const EXPLICIT: &[u8] = include_bytes!("fixtures/touch__explicit_utm_with_email.json");
const IDENTIFY: &[u8] = include_bytes!("fixtures/identify.json");

fn run(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    let headers = Headers::from_pairs([
        ("Origin", "https://shop.example"),
        ("User-Agent", "Mozilla/5.0"),
    ]);
    let req = WebhookRequest {
        headers: &headers,
        body,
        url_token: None,
    };
    // Unsigned by design: anything verifies, even without credentials.
    ProviderKind::Collect
        .verify(&Credentials::default(), &req, NOW)
        .unwrap();
    let inbound = ProviderKind::Collect.describe(&req)?;
    let kept = headers.select(ProviderKind::Collect.kept_headers());
    assert_eq!(kept.get("origin"), Some("https://shop.example"));
    assert_eq!(kept.get("user-agent"), None);
    let options = MapOptions::default();
    let ctx = MapContext {
        tenant: "t1",
        options: &options,
    };
    let input = RawInput {
        topic: &inbound.topic,
        event_id: &inbound.event_id,
        headers: &kept,
        body,
        received_at: NOW,
    };
    let events = ProviderKind::Collect.map(&ctx, &input)?;
    Ok((inbound, events))
}

fn touch(events: &[Envelope]) -> &Touch {
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::Touch(t) => t,
        other => panic!("expected a touch, got {other:?}"),
    }
}

#[test]
fn utm_from_landing_page() {
    let (inbound, events) = run(LANDING).unwrap();
    assert_eq!(inbound.topic, "touch");
    assert_eq!(inbound.event_id.len(), 64, "content hash without touch_id");
    assert_eq!(inbound.occurred_at, Some(datetime!(2025-04-02 8:15:30 UTC)));
    let t = touch(&events);
    assert_eq!(events[0].provider, "collect");
    assert_eq!(events[0].occurred_at, datetime!(2025-04-02 8:15:30 UTC));
    assert_eq!(t.touch_id, inbound.event_id);
    assert_eq!(t.identity.anonymous_id.as_deref(), Some("anon-7d1c9e"));
    assert_eq!(t.identity.email, None);
    assert_eq!(
        t.utm,
        Utm {
            source: Some("newsletter".into()),
            medium: Some("email".into()),
            campaign: Some("spring drop".into()),
            term: None,
            content: None,
        }
    );
    assert_eq!(t.gclid.as_deref(), Some("Cj0KCQ=="));
    assert_eq!(t.fbclid, None);
    assert_eq!(t.referrer.as_deref(), Some("https://mail.example.com/"));
    assert_eq!(t.cart_token.as_deref(), Some("c1-9f8e7d"));
    assert_eq!(t.at, datetime!(2025-04-02 8:15:30 UTC));
}

#[test]
fn explicit_utm_wins_and_email_rides_along() {
    let (inbound, events) = run(EXPLICIT).unwrap();
    assert_eq!(inbound.topic, "touch");
    assert_eq!(inbound.event_id, "tch_01HV8X");
    assert_eq!(inbound.occurred_at, None);
    let t = touch(&events);
    assert_eq!(t.touch_id, "tch_01HV8X");
    assert_eq!(t.identity.email.as_deref(), Some("ana@example.com"));
    assert_eq!(t.identity.anonymous_id.as_deref(), Some("anon-7d1c9e"));
    assert_eq!(t.utm.source.as_deref(), Some("facebook"));
    assert_eq!(t.utm.medium.as_deref(), Some("paid_social"));
    assert_eq!(t.utm.campaign.as_deref(), Some("retarget-q2"));
    assert_eq!(t.utm.content.as_deref(), Some("carousel"));
    assert_eq!(t.fbclid.as_deref(), Some("IwAR0abc"));
    assert_eq!(
        t.landing_page.as_deref(),
        Some("/collections/sale?utm_source=ignored")
    );
    // No `at`: when the ingest received it.
    assert_eq!(t.at, NOW);
}

#[test]
fn email_without_visit_is_identify() {
    let (inbound, events) = run(IDENTIFY).unwrap();
    assert_eq!(inbound.topic, "identify");
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::Identify(Identify { identity, at }) => {
            assert_eq!(identity.email.as_deref(), Some("ana@example.com"));
            assert_eq!(identity.anonymous_id.as_deref(), Some("anon-7d1c9e"));
            assert_eq!(*at, datetime!(2025-04-02 6:20 UTC));
        }
        other => panic!("expected identify, got {other:?}"),
    }
}

#[test]
fn bad_beacons() {
    assert!(matches!(
        run(br#"{"landing_page":"/x?utm_source=a"}"#),
        Err(MapError::MissingField(f)) if f == "anonymous_id"
    ));
    assert!(matches!(
        run(br#"{"anonymous_id":"  ","email":"not an email"}"#),
        Err(MapError::MissingField(_))
    ));
    assert!(matches!(
        run(br#"{"anonymous_id":"a","at":"last tuesday"}"#),
        Err(MapError::InvalidField { .. })
    ));
    assert!(matches!(run(b"<html>"), Err(MapError::Json(_))));
    assert_eq!(
        ProviderKind::Collect.sign("", "touch", b"{}", NOW),
        Err(SignError::NotSigned("collect"))
    );
}
