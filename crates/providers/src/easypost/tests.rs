use storefold_core::event::{OrderLink, Shipment, ShipmentStatus};
use storefold_core::{Envelope, Event};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::test_support::Harness;
use crate::test_support::{conformance_dir, json_file_names, read_file};
use crate::{Credentials, Headers, Inbound, MapError, ProviderKind, VerifyError, WebhookRequest};

const SECRET: &str = "easypost-webhook-secret";
const NOW: OffsetDateTime = datetime!(2024-10-01 12:00 UTC);

const RTS: &[u8] = include_bytes!("fixtures/tracker_updated__return_to_sender.json");
const UNKNOWN: &[u8] = include_bytes!("fixtures/tracker_created__unknown.json");
const BATCH: &[u8] = include_bytes!("fixtures/batch_updated.json");

fn signed_headers(secret: &str, body: &[u8]) -> Headers {
    let s = ProviderKind::Easypost
        .sign(secret, "tracker.updated", body, NOW)
        .unwrap();
    Headers::from_pairs(s.headers)
}

fn verify_with(secret: &str, headers: &Headers, body: &[u8]) -> Result<(), VerifyError> {
    let req = WebhookRequest {
        headers,
        body,
        url_token: None,
    };
    ProviderKind::Easypost.verify(&Credentials::new(secret), &req, NOW)
}

fn run(body: &[u8]) -> Result<(Inbound, Vec<Envelope>), MapError> {
    Harness::new(ProviderKind::Easypost, SECRET, NOW).deliver("tracker.updated", body)
}

fn shipment(events: &[Envelope]) -> &Shipment {
    assert_eq!(events.len(), 1);
    match &events[0].event {
        Event::ShipmentUpdated(s) => s,
        other => panic!("expected a shipment, got {other:?}"),
    }
}

#[test]
fn signature_known_answers_with_nfkd_secret() {
    // Expected values computed with python's hmac + unicodedata.normalize("NFKD").
    let h = signed_headers("whsec", b"{}");
    assert_eq!(
        h.get("x-hmac-signature"),
        Some("hmac-sha256-hex=ae6341ea7f40a435db57d903d02cba19085efb8a913f8cfbd8cff3d7df0c7a2d")
    );
    // "sécrèt" plus the "ﬁ" ligature: NFKD decomposes both before keying.
    let h = signed_headers("s\u{e9}cr\u{e8}t\u{fb01}", b"{}");
    assert_eq!(
        h.get("x-hmac-signature"),
        Some("hmac-sha256-hex=44ef1ae66e1c776f259e518fc98d4453282f38f8883c3625c549a75e67cc2f35")
    );
    // The composed and decomposed spellings of a secret are the same key.
    assert_eq!(
        verify_with("se\u{301}cre\u{300}tfi", &h, b"{}"),
        Ok(()),
        "NFKD-equal secrets verify"
    );
}

#[test]
fn verify_failures() {
    let good = signed_headers(SECRET, RTS);
    assert_eq!(verify_with(SECRET, &good, RTS), Ok(()));
    assert_eq!(verify_with("other", &good, RTS), Err(VerifyError::Mismatch));
    let mut tampered = RTS.to_vec();
    *tampered.last_mut().unwrap() = b' ';
    assert_eq!(
        verify_with(SECRET, &good, &tampered),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        verify_with(SECRET, &Headers::new(), RTS),
        Err(VerifyError::MissingHeader("x-hmac-signature"))
    );
    let bare_hex = good
        .get("x-hmac-signature")
        .unwrap()
        .replace("hmac-sha256-hex=", "");
    assert!(matches!(
        verify_with(
            SECRET,
            &Headers::from_pairs([("X-Hmac-Signature", bare_hex)]),
            RTS
        ),
        Err(VerifyError::MalformedHeader { .. })
    ));
    assert!(matches!(
        verify_with(
            SECRET,
            &Headers::from_pairs([("X-Hmac-Signature", "hmac-sha256-hex=zz")]),
            RTS
        ),
        Err(VerifyError::MalformedHeader { .. })
    ));
    assert!(matches!(
        verify_with("", &good, RTS),
        Err(VerifyError::BadCredentials(_))
    ));
}

#[test]
fn return_to_sender_tracker() {
    let (inbound, events) = run(RTS).unwrap();
    assert_eq!(inbound.topic, "tracker.updated");
    assert_eq!(inbound.event_id, "evt_5a1f0c2e9b7d4e33a0c1d2e3f4a5b6c7");
    assert_eq!(
        inbound.occurred_at,
        Some(datetime!(2024-09-12 18:03:44 UTC))
    );
    let s = shipment(&events);
    assert_eq!(events[0].provider, "easypost");
    assert_eq!(events[0].event_id, inbound.event_id);
    assert_eq!(s.tracking_number, "9400100000000000000001");
    assert_eq!(s.carrier.as_deref(), Some("USPS"));
    assert_eq!(s.status, ShipmentStatus::Returned);
    assert_eq!(s.at, datetime!(2024-09-12 17:55 UTC));
    assert_eq!(s.estimated_delivery, None);
    assert_eq!(
        s.links,
        vec![OrderLink::Tracking {
            number: "9400100000000000000001".into()
        }]
    );
    let steps: Vec<_> = s.checkpoints.iter().map(|c| c.status).collect();
    assert_eq!(
        steps,
        vec![
            ShipmentStatus::LabelCreated,
            ShipmentStatus::InTransit,
            ShipmentStatus::Exception,
            ShipmentStatus::Returned,
        ]
    );
    assert_eq!(s.checkpoints[0].location, None);
    assert_eq!(
        s.checkpoints[1].location.as_deref(),
        Some("SEATTLE, WA, US")
    );
    assert_eq!(
        s.checkpoints[3].message.as_deref(),
        Some("Return to Sender")
    );
}

#[test]
fn unknown_without_details_is_label_created_at_tracker_time() {
    let (_, events) = run(UNKNOWN).unwrap();
    let s = shipment(&events);
    assert_eq!(s.status, ShipmentStatus::LabelCreated);
    assert!(s.checkpoints.is_empty());
    assert_eq!(s.at, datetime!(2024-10-01 11:59:58 UTC));
}

#[test]
fn status_table() {
    use super::map::status_of;
    let cases = [
        ("pre_transit", Some(ShipmentStatus::LabelCreated)),
        ("in_transit", Some(ShipmentStatus::InTransit)),
        ("out_for_delivery", Some(ShipmentStatus::OutForDelivery)),
        ("available_for_pickup", Some(ShipmentStatus::OutForDelivery)),
        ("delivered", Some(ShipmentStatus::Delivered)),
        ("return_to_sender", Some(ShipmentStatus::Returned)),
        ("failure", Some(ShipmentStatus::Exception)),
        ("error", Some(ShipmentStatus::Exception)),
        ("cancelled", Some(ShipmentStatus::Exception)),
        ("unknown", None),
    ];
    for (raw, want) in cases {
        assert_eq!(status_of(Some(raw)), want, "{raw}");
    }
}

#[test]
fn non_tracker_events_are_unsupported() {
    assert_eq!(
        run(BATCH).unwrap_err(),
        MapError::UnsupportedTopic("batch.updated".into())
    );
    assert!(matches!(
        run(br#"{"id":"evt_1","description":"tracker.updated"}"#),
        Err(MapError::MissingField(f)) if f == "result"
    ));
    assert!(matches!(
        run(br#"{"id":"evt_1","description":"tracker.updated","result":{"object":"Tracker"}}"#),
        Err(MapError::MissingField(f)) if f == "result.tracking_code"
    ));
    assert!(matches!(
        run(br#"{"description":"tracker.updated"}"#),
        Err(MapError::MissingField(f)) if f == "id"
    ));
}

/// Every file of the shared EasyPost conformance corpus, read in place.
#[test]
fn conformance_corpus() {
    let Some(dir) = conformance_dir("easypost") else {
        return;
    };
    // file -> (tracking code, carrier, status, number of details, latest detail time)
    let expected: [(&str, &str, &str, ShipmentStatus, usize, OffsetDateTime); 3] = [
        (
            "tracker_updated__delivered.json",
            "EZ4000000004",
            "UPS",
            ShipmentStatus::Delivered,
            6,
            datetime!(2014-08-24 15:33 UTC),
        ),
        (
            "tracker_updated__in_transit.json",
            "1",
            "FedEx",
            ShipmentStatus::InTransit,
            7,
            datetime!(2024-08-02 18:50 UTC),
        ),
        (
            "tracker__pre_transit__api_object.json",
            "EZ1000000001",
            "USPS",
            ShipmentStatus::LabelCreated,
            2,
            datetime!(2025-04-10 9:17:17 UTC),
        ),
    ];
    let mut seen = 0;
    for name in json_file_names(&dir) {
        let raw = read_file(&dir, &name);
        let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        // The API object is a bare Tracker: wrap it the way EasyPost delivers it.
        let body = if value["object"] == "Tracker" {
            serde_json::to_vec(&serde_json::json!({
                "object": "Event",
                "id": "evt_wrapped_api_object",
                "description": "tracker.updated",
                "created_at": value["updated_at"],
                "result": value,
            }))
            .unwrap()
        } else {
            raw
        };
        let (inbound, events) = run(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(inbound.topic, "tracker.updated", "{name}");
        let s = shipment(&events);
        let (_, code, carrier, status, details, latest) = expected
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("no expectation for new corpus file {name}"));
        assert_eq!(s.tracking_number, *code, "{name}");
        assert_eq!(s.carrier.as_deref(), Some(*carrier), "{name}");
        assert_eq!(s.status, *status, "{name}");
        assert_eq!(s.checkpoints.len(), *details, "{name}");
        assert_eq!(s.at, *latest, "{name}");
        assert!(
            s.checkpoints.windows(2).all(|w| w[0].at <= w[1].at),
            "{name}: checkpoints in time order"
        );
        assert_eq!(
            s.checkpoints.last().map(|c| c.status),
            Some(*status),
            "{name}: the latest detail agrees with the tracker"
        );
        seen += 1;
    }
    assert_eq!(seen, expected.len(), "every corpus file was checked");
}
