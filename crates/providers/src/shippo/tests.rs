use storefold_core::event::{OrderLink, Shipment, ShipmentStatus};
use storefold_core::{Envelope, Event};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::Harness;
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const TOKEN: &str = "tenant-shippo-token-0f9e";
const NOW: OffsetDateTime = datetime!(2024-12-01 12:00 UTC);

const OFD: &[u8] = include_bytes!("fixtures/track_updated__out_for_delivery.json");
const RETURNED: &[u8] = include_bytes!("fixtures/track_updated__returned.json");
const TX: &[u8] = include_bytes!("fixtures/transaction_created.json");

fn verify(token: Option<&str>, secret: &str) -> Result<(), VerifyError> {
    let headers = Headers::new();
    let req = WebhookRequest {
        headers: &headers,
        body: OFD,
        url_token: token,
    };
    ProviderKind::Shippo.verify(&Credentials::new(secret), &req, NOW)
}

fn run(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    Harness::new(ProviderKind::Shippo, TOKEN, NOW).deliver("track_updated", body)
}

fn shipment(events: &[Envelope]) -> &Shipment {
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::ShipmentUpdated(s) => s,
        other => panic!("expected a shipment, got {other:?}"),
    }
}

#[test]
fn url_token_is_checked() {
    assert_eq!(verify(Some(TOKEN), TOKEN), Ok(()));
    assert_eq!(verify(None, TOKEN), Err(VerifyError::BadToken));
    assert_eq!(
        verify(Some("tenant-shippo-token-0f9f"), TOKEN),
        Err(VerifyError::BadToken)
    );
    assert_eq!(verify(Some(""), TOKEN), Err(VerifyError::BadToken));
    assert_eq!(verify(Some("tenant"), TOKEN), Err(VerifyError::BadToken));
    assert!(matches!(
        verify(Some(""), ""),
        Err(VerifyError::BadCredentials(_))
    ));
    let signed = ProviderKind::Shippo
        .sign(TOKEN, "track_updated", OFD, NOW)
        .unwrap();
    assert_eq!(signed.url_token.as_deref(), Some(TOKEN));
    assert_eq!(signed.body, OFD);
}

#[test]
fn out_for_delivery_with_order_metadata() {
    let (inbound, events) = run(OFD).unwrap();
    assert_eq!(inbound.topic, "track_updated");
    assert!(inbound.event_id.starts_with("shippo:"));
    assert_eq!(inbound.occurred_at, Some(datetime!(2024-11-05 8:10 UTC)));
    let s = shipment(&events);
    assert_eq!(events[0].provider, "shippo");
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(s.tracking_number, "92055901755477000000000015");
    assert_eq!(s.carrier.as_deref(), Some("usps"));
    assert_eq!(s.status, ShipmentStatus::OutForDelivery);
    assert_eq!(s.at, datetime!(2024-11-05 8:10 UTC));
    assert_eq!(s.estimated_delivery, Some(datetime!(2024-11-06 0:00 UTC)));
    assert_eq!(
        s.links,
        vec![
            OrderLink::Tracking {
                number: "92055901755477000000000015".into()
            },
            OrderLink::Number {
                number: "#1001".into()
            },
        ]
    );
    // History (out of order, current status repeated) becomes a sorted timeline.
    let steps: Vec<_> = s
        .checkpoints
        .iter()
        .map(|c| (c.at, c.status, c.location.clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (
                datetime!(2024-11-02 17:00 UTC),
                ShipmentStatus::LabelCreated,
                None
            ),
            (
                datetime!(2024-11-03 1:05 UTC),
                ShipmentStatus::InTransit,
                Some("San Francisco, CA, US".into())
            ),
            (
                datetime!(2024-11-04 22:40 UTC),
                ShipmentStatus::InTransit,
                Some("Chicago, IL, US".into())
            ),
            (
                datetime!(2024-11-05 8:10 UTC),
                ShipmentStatus::OutForDelivery,
                Some("Chicago, IL, US".into())
            ),
        ]
    );
}

#[test]
fn returned_tracker() {
    let (inbound, events) = run(RETURNED).unwrap();
    let s = shipment(&events);
    assert_eq!(s.status, ShipmentStatus::Returned);
    assert_eq!(s.estimated_delivery, None);
    let statuses: Vec<_> = s.checkpoints.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![
            ShipmentStatus::InTransit,
            ShipmentStatus::Exception,
            ShipmentStatus::Returned,
            ShipmentStatus::Returned,
        ]
    );
    assert!(s.links.contains(&OrderLink::Number {
        number: "#000123".into()
    }));
    // The id depends on tracking number, status and status date only.
    let (other, _) = run(OFD).unwrap();
    assert_ne!(inbound.event_id, other.event_id);
    let (again, _) = run(RETURNED).unwrap();
    assert_eq!(inbound.event_id, again.event_id);
}

#[test]
fn status_table() {
    use super::map::status_of;
    let cases = [
        ("PRE_TRANSIT", None, Some(ShipmentStatus::LabelCreated)),
        ("TRANSIT", None, Some(ShipmentStatus::InTransit)),
        (
            "TRANSIT",
            Some("out_for_delivery"),
            Some(ShipmentStatus::OutForDelivery),
        ),
        (
            "TRANSIT",
            Some("pickup_available"),
            Some(ShipmentStatus::OutForDelivery),
        ),
        (
            "TRANSIT",
            Some("return_to_sender"),
            Some(ShipmentStatus::Returned),
        ),
        ("DELIVERED", None, Some(ShipmentStatus::Delivered)),
        ("RETURNED", None, Some(ShipmentStatus::Returned)),
        ("FAILURE", None, Some(ShipmentStatus::Exception)),
        ("UNKNOWN", None, None),
    ];
    for (status, sub, want) in cases {
        assert_eq!(status_of(Some(status), sub), want, "{status} {sub:?}");
    }
}

#[test]
fn other_events_unsupported_and_bad_bodies_malformed() {
    assert_eq!(
        run(TX).unwrap_err(),
        MapError::UnsupportedTopic("transaction_created".into())
    );
    assert!(matches!(run(b"nope"), Err(MapError::Json(_))));
    assert!(matches!(
        run(br#"{"event":"track_updated"}"#),
        Err(MapError::MissingField(f)) if f == "data"
    ));
    assert!(matches!(
        run(br#"{"event":"track_updated","data":{"carrier":"usps"}}"#),
        Err(MapError::MissingField(f)) if f == "data.tracking_number"
    ));
    assert!(matches!(
        run(br#"{"event":"track_updated","data":"x"}"#),
        Err(MapError::InvalidField { .. })
    ));
}
