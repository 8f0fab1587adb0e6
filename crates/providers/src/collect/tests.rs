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
    run_as(body, Some(super::IDENTITY_OPTED_IN))
}

/// Maps `body` as stored by the ingest, with its identity mark (if any).
fn run_as(body: &[u8], identity: Option<&str>) -> Result<(Inbound, Vec<Envelope>), MapError> {
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
    let mut kept = headers.select(ProviderKind::Collect.kept_headers());
    assert_eq!(kept.get("origin"), Some("https://shop.example"));
    assert_eq!(kept.get("user-agent"), None);
    if let Some(mark) = identity {
        kept.insert(super::IDENTITY_HEADER, mark);
    }
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

#[test]
fn an_unvouched_email_neither_creates_nor_merges() {
    // A touch keeps its anonymous id only.
    let (_, events) = run_as(EXPLICIT, None).unwrap();
    let t = touch(&events);
    assert_eq!(t.identity.email, None);
    assert_eq!(t.identity.anonymous_id.as_deref(), Some("anon-7d1c9e"));
    // A forged mark is no mark.
    let (_, events) = run_as(EXPLICIT, Some("yes")).unwrap();
    assert_eq!(touch(&events).identity.email, None);
    // An identify says nothing without a vouched email.
    let (inbound, events) = run_as(IDENTIFY, None).unwrap();
    assert_eq!(inbound.topic, "identify");
    assert!(events.is_empty(), "{events:?}");
    // Nor does a touch that only has an email.
    let (_, events) = run_as(
        br#"{"email":"ana@example.com","landing_page":"/?utm_source=x"}"#,
        None,
    )
    .unwrap();
    assert!(events.is_empty());
    // A signed one counts.
    let (_, events) = run_as(IDENTIFY, Some(super::IDENTITY_SIGNED)).unwrap();
    assert_eq!(events.len(), 1);
}

#[test]
fn a_touch_is_never_later_than_its_receipt() {
    let (_, events) =
        run(br#"{"anonymous_id":"a","at":"2099-01-01T00:00:00Z","landing_page":"/"}"#).unwrap();
    assert_eq!(touch(&events).at, NOW);
    assert_eq!(events[0].occurred_at, NOW);
}

#[test]
fn identity_tokens_bind_tenant_email_and_expiry() {
    use super::{identity_token, verify_identity_token};
    use crate::VerifyError;
    let key = "0123456789abcdef-shop-key";
    let exp = NOW.unix_timestamp() + 3600;
    let token = identity_token(key, "t1", "Ana@Example.com ", exp);
    assert!(verify_identity_token(key, "t1", "ana@example.com", &token, NOW).is_ok());
    for (tenant, email, key_used) in [
        ("t2", "ana@example.com", key),
        ("t1", "eve@example.com", key),
        ("t1", "ana@example.com", "another-key-0000000"),
    ] {
        assert_eq!(
            verify_identity_token(key_used, tenant, email, &token, NOW),
            Err(VerifyError::Mismatch),
            "{tenant} {email}"
        );
    }
    // Expired, and an expiry moved later by hand.
    let late = NOW + time::Duration::hours(2);
    assert!(matches!(
        verify_identity_token(key, "t1", "ana@example.com", &token, late),
        Err(VerifyError::Expired { .. })
    ));
    let (_, mac) = token.split_once('.').unwrap();
    let moved = format!("{}.{mac}", exp + 86_400);
    assert_eq!(
        verify_identity_token(key, "t1", "ana@example.com", &moved, NOW),
        Err(VerifyError::Mismatch)
    );
    assert!(matches!(
        verify_identity_token(key, "t1", "ana@example.com", "garbage", NOW),
        Err(VerifyError::MalformedHeader { .. })
    ));
    // The documented text, computed by hand.
    let text = format!("storefold-identity-v1\nt1\nana@example.com\n{exp}");
    let mac = hex::encode(crate::hmac_sha256(key.as_bytes(), &[text.as_bytes()]));
    assert_eq!(token, format!("{exp}.{mac}"));
}

#[test]
fn claims_for_the_ingest() {
    let c = super::claims(EXPLICIT).unwrap();
    assert_eq!(c.email.as_deref(), Some("ana@example.com"));
    assert!(c.visit && c.anonymous_id);
    assert_eq!(c.at, None);
    let c =
        super::claims(br#"{"anonymous_id":"a","at":"2025-04-02T08:00:00Z","email_token":"1.ab"}"#)
            .unwrap();
    assert_eq!(c.at, Some(datetime!(2025-04-02 8:00 UTC)));
    assert_eq!(c.email_token.as_deref(), Some("1.ab"));
    assert!(!c.visit);
    assert!(super::claims(br#"{"anonymous_id":"a","at":"soon"}"#).is_err());
}
