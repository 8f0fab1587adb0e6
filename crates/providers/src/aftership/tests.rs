use storefold_core::Event;
use storefold_core::event::{OrderLink, Shipment, ShipmentStatus};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::Harness;
use crate::{Credentials, Headers, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "aftership-test-secret-1";
const NOW: OffsetDateTime = datetime!(2024-05-03 15:00 UTC);

const DELIVERED: &[u8] = include_bytes!("fixtures/tracking_update__delivered.json");
const RETURNED: &[u8] = include_bytes!("fixtures/tracking_update__returned.json");
const PICKUP: &[u8] = include_bytes!("fixtures/tracking_update__pickup.json");
const EDD: &[u8] = include_bytes!("fixtures/edd_revise.json");

fn signed_headers(secret: &str, body: &[u8]) -> Headers {
    let signed = ProviderKind::Aftership
        .sign(secret, "tracking_update", body, NOW)
        .unwrap();
    Headers::from_pairs(signed.headers)
}

fn verify(headers: &Headers, body: &[u8]) -> Result<(), VerifyError> {
    let req = WebhookRequest {
        headers,
        body,
        url_token: None,
    };
    ProviderKind::Aftership.verify(&Credentials::new(SECRET), &req, NOW)
}

/// Verifies, describes and maps a signed fixture like the ingest and processor do.
fn run(body: &[u8]) -> Result<(crate::Inbound, Vec<storefold_core::Envelope>), MapError> {
    Harness::new(ProviderKind::Aftership, SECRET, NOW).deliver("tracking_update", body)
}

fn shipment(events: &[storefold_core::Envelope]) -> &Shipment {
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::ShipmentUpdated(s) => s,
        other => panic!("expected a shipment, got {other:?}"),
    }
}

#[test]
fn signature_is_base64_hmac_of_body() {
    // Known answer computed independently (python: hmac.new(secret, body, sha256), b64).
    let headers = signed_headers("secret", b"{}");
    assert_eq!(
        headers.get("aftership-hmac-sha256"),
        Some("dzJZAsrKgS3CWXM6rNBGtzgXNyx3e42VtAJkdHRRbhM=")
    );
}

#[test]
fn verify_rejects_wrong_secret_tampering_and_missing_header() {
    let good = signed_headers(SECRET, DELIVERED);
    assert_eq!(verify(&good, DELIVERED), Ok(()));
    let wrong = signed_headers("another-secret", DELIVERED);
    assert_eq!(verify(&wrong, DELIVERED), Err(VerifyError::Mismatch));
    let mut tampered = DELIVERED.to_vec();
    tampered[10] ^= 0x01;
    assert_eq!(verify(&good, &tampered), Err(VerifyError::Mismatch));
    assert_eq!(
        verify(&Headers::new(), DELIVERED),
        Err(VerifyError::MissingHeader("aftership-hmac-sha256"))
    );
    let garbled = Headers::from_pairs([("aftership-hmac-sha256", "%%%not base64")]);
    assert!(matches!(
        verify(&garbled, DELIVERED),
        Err(VerifyError::MalformedHeader { .. })
    ));
    // The newer header name carries the same HMAC.
    let alt = Headers::from_pairs([(
        "As-Signature-Hmac-Sha256",
        good.get("aftership-hmac-sha256").unwrap(),
    )]);
    assert_eq!(verify(&alt, DELIVERED), Ok(()));
    let req = WebhookRequest {
        headers: &good,
        body: DELIVERED,
        url_token: None,
    };
    assert!(matches!(
        ProviderKind::Aftership.verify(&Credentials::new(""), &req, NOW),
        Err(VerifyError::BadCredentials(_))
    ));
}

#[test]
fn delivered_tracking_maps_to_sorted_timeline() {
    let (inbound, events) = run(DELIVERED).unwrap();
    assert_eq!(inbound.topic, "tracking_update");
    assert_eq!(inbound.event_id, "5b0c9f7e-3a41-4c1e-9d0e-7f2a51c0d001");
    assert_eq!(inbound.occurred_at, Some(datetime!(2024-05-03 14:30 UTC)));
    let s = shipment(&events);
    assert_eq!(events[0].provider, "aftership");
    assert_eq!(events[0].tenant, "t1");
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(events[0].occurred_at, datetime!(2024-05-03 14:30 UTC));
    assert_eq!(s.tracking_number, "1Z999AA10123456784");
    assert_eq!(s.carrier.as_deref(), Some("ups"));
    assert_eq!(s.status, ShipmentStatus::Delivered);
    assert_eq!(s.at, datetime!(2024-05-03 14:30 UTC));
    assert_eq!(s.estimated_delivery, Some(datetime!(2024-05-04 0:00 UTC)));
    assert_eq!(
        s.links,
        vec![
            OrderLink::Tracking {
                number: "1Z999AA10123456784".into()
            },
            OrderLink::Order {
                order_id: "shopify:450789469".into()
            },
            OrderLink::Number {
                number: "#1001".into()
            },
        ]
    );
    // The checkpoint without a time is left out; the rest are in time order.
    let steps: Vec<_> = s.checkpoints.iter().map(|c| (c.at, c.status)).collect();
    assert_eq!(
        steps,
        vec![
            (
                datetime!(2024-05-01 18:00 UTC),
                ShipmentStatus::LabelCreated
            ),
            (datetime!(2024-05-02 7:15 UTC), ShipmentStatus::InTransit),
            (
                datetime!(2024-05-03 7:02:11 UTC),
                ShipmentStatus::OutForDelivery
            ),
            (datetime!(2024-05-03 14:30 UTC), ShipmentStatus::Delivered),
        ]
    );
    assert_eq!(
        s.checkpoints[1].location.as_deref(),
        Some("Hodgkins, IL, US")
    );
    assert_eq!(
        s.checkpoints[2].location.as_deref(),
        Some("Chicago, IL, United States")
    );
    assert_eq!(s.checkpoints[0].location, None);
    assert_eq!(
        s.checkpoints[3].message.as_deref(),
        Some("Delivered, front door")
    );
}

#[test]
fn return_to_sender_is_returned_and_id_is_derived() {
    let (inbound, events) = run(RETURNED).unwrap();
    // No event_id in the body: msg.id, tag and the latest checkpoint's time.
    assert_eq!(
        inbound.event_id,
        "r9x2returned0000000000001:Delivered:2024-06-09T16:45:00-05:00"
    );
    assert_eq!(inbound.occurred_at, Some(datetime!(2024-06-09 21:45 UTC)));
    let s = shipment(&events);
    assert_eq!(s.status, ShipmentStatus::Returned);
    assert_eq!(s.carrier.as_deref(), Some("usps"));
    assert_eq!(s.estimated_delivery, None);
    let statuses: Vec<_> = s.checkpoints.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![
            ShipmentStatus::InTransit,
            ShipmentStatus::Returned,
            ShipmentStatus::Delivered
        ]
    );
    assert_eq!(s.checkpoints[1].location.as_deref(), Some("Denver, CO"));
    assert!(s.links.contains(&OrderLink::Order {
        order_id: "shopify:1002".into()
    }));
    assert!(s.links.contains(&OrderLink::Number {
        number: "#1002".into()
    }));
}

#[test]
fn available_for_pickup_is_out_for_delivery() {
    let (_, events) = run(PICKUP).unwrap();
    let s = shipment(&events);
    assert_eq!(s.status, ShipmentStatus::OutForDelivery);
    assert_eq!(s.checkpoints.len(), 2);
    assert_eq!(s.checkpoints[0].location.as_deref(), Some("Germany"));
    assert_eq!(
        s.links,
        vec![OrderLink::Tracking {
            number: "JD014600006281230701".into()
        }]
    );
}

#[test]
fn tag_table() {
    use super::map::status_of;
    let cases = [
        ("InfoReceived", None, Some(ShipmentStatus::LabelCreated)),
        ("Pending", None, None),
        ("InTransit", None, Some(ShipmentStatus::InTransit)),
        ("OutForDelivery", None, Some(ShipmentStatus::OutForDelivery)),
        (
            "AvailableForPickup",
            None,
            Some(ShipmentStatus::OutForDelivery),
        ),
        ("Delivered", None, Some(ShipmentStatus::Delivered)),
        ("AttemptFail", None, Some(ShipmentStatus::Exception)),
        (
            "Exception",
            Some("Exception_004"),
            Some(ShipmentStatus::Exception),
        ),
        ("Expired", None, Some(ShipmentStatus::Exception)),
        (
            "Exception",
            Some("Exception_011"),
            Some(ShipmentStatus::Returned),
        ),
        (
            "Exception",
            Some("Exception_010"),
            Some(ShipmentStatus::Returned),
        ),
        ("SomethingNew", None, None),
    ];
    for (tag, subtag, want) in cases {
        assert_eq!(status_of(Some(tag), subtag), want, "{tag} {subtag:?}");
    }
}

#[test]
fn other_events_are_unsupported_and_garbage_is_malformed() {
    let err = run(EDD).unwrap_err();
    assert_eq!(err, MapError::UnsupportedTopic("edd_revise".into()));
    assert!(matches!(run(b"{not json"), Err(MapError::Json(_))));
    assert!(matches!(
        run(br#"{"event":"tracking_update","ts":1}"#),
        Err(MapError::MissingField(f)) if f == "msg"
    ));
    assert!(matches!(
        run(br#"{"event":"tracking_update","msg":{"tag":"Delivered"},"ts":1}"#),
        Err(MapError::MissingField(f)) if f == "msg.tracking_number"
    ));
    assert!(matches!(
        run(br#"{"event":"tracking_update","msg":{},"ts":"yesterday"}"#),
        Err(MapError::InvalidField { .. })
    ));
}
