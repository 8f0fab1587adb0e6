//! The Avro contracts, exercised through the public API: round trips in both wire
//! formats, exact headers, typed errors on bad input, schema evolution and the
//! backward-compatibility checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::types::{Record, Value};
use apache_avro::writer::datum::GenericDatumWriter;
use proptest::prelude::*;
use storefold_codec::{
    AvroCodec, AvroRecord, CommitMarker, CompatError, CustomerProjection, Error, Fingerprint,
    InputPosition, OrderProjection, PayoutProjection, RawEvent, RecordKind, SchemaOutcome,
    StateKind, StateRecord, Trigger, Verification, VerificationStatus, WireFormat, check_backward,
    check_dir,
};

// ---------------------------------------------------------------------------------
// samples

fn raw_event() -> RawEvent {
    RawEvent {
        event_id: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into(),
        tenant: "acme".into(),
        provider: "shopify".into(),
        topic: "orders/create".into(),
        received_at: 1_732_780_800_123,
        headers: BTreeMap::from([
            ("x-shopify-topic".to_owned(), "orders/create".to_owned()),
            (
                "x-shopify-shop-domain".to_owned(),
                "acme.myshopify.com".to_owned(),
            ),
            ("x-shopify-webhook-id".to_owned(), "b54557e4".to_owned()),
            (
                "x-shopify-triggered-at".to_owned(),
                "2024-11-28T08:00:00Z".to_owned(),
            ),
        ]),
        // Not UTF-8 on purpose: the body is kept byte for byte.
        body: b"{\"id\":450789469,\"note\":\"caf\xc3\xa9\"}\xff\x00".to_vec(),
        verification: Verification::verified("shopify-hmac-sha256"),
        trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        encryption: None,
        residue: None,
    }
}

fn raw_event_unsigned() -> RawEvent {
    RawEvent {
        event_id: "sha256:9f86d081".into(),
        tenant: "acme".into(),
        provider: "collect".into(),
        topic: "touch".into(),
        received_at: 0,
        headers: BTreeMap::new(),
        body: Vec::new(),
        verification: Verification::unsigned(),
        trace_context: None,
        encryption: None,
        residue: None,
    }
}

fn customer() -> CustomerProjection {
    CustomerProjection {
        tenant: "acme".into(),
        customer_id: "c-42".into(),
        generation: 3,
        version: 17,
        email: Some("jane@example.com".into()),
        phone: Some("+14155550123".into()),
        redacted: false,
        merged_into: None,
        updated_at: 1_732_780_800_000,
        doc: r#"{"orders_count":2,"net_revenue":{"USD":12000}}"#.into(),
        view: None,
    }
}

fn customer_merged() -> CustomerProjection {
    CustomerProjection {
        email: None,
        phone: None,
        redacted: true,
        merged_into: Some("c-7".into()),
        generation: i64::MAX,
        version: i64::MIN,
        ..customer()
    }
}

fn order() -> OrderProjection {
    OrderProjection {
        tenant: "acme".into(),
        order_id: "shopify:450789469".into(),
        customer_id: Some("c-42".into()),
        generation: 1,
        version: 4,
        status: "fulfilled".into(),
        updated_at: 1_732_780_900_000,
        doc: r#"{"payments":[],"shipments":[{"carrier":"ups"}]}"#.into(),
        view: None,
    }
}

fn order_orphan() -> OrderProjection {
    OrderProjection {
        customer_id: None,
        status: "open".into(),
        ..order()
    }
}

fn payout() -> PayoutProjection {
    PayoutProjection {
        tenant: "acme".into(),
        provider: "stripe".into(),
        payout_id: "po_1".into(),
        generation: 1,
        version: 3,
        status: Some("paid".into()),
        currency: Some("USD".into()),
        amount: Some(6680),
        difference: Some(0),
        reconciled: true,
        updated_at: 1_772_762_400_000,
        doc: r#"{"lines":[{"line_id":"txn_1","order_id":"shopify:1001"}]}"#.into(),
    }
}

/// A payout known only from its lines.
fn payout_lines_only() -> PayoutProjection {
    PayoutProjection {
        status: None,
        currency: None,
        amount: None,
        difference: None,
        reconciled: false,
        updated_at: 0,
        ..payout()
    }
}

fn trigger() -> Trigger {
    Trigger {
        trigger_id: "acme/delivered/evt_1".into(),
        tenant: "acme".into(),
        customer_id: "c-42".into(),
        order_id: Some("shopify:450789469".into()),
        kind: "delivered".into(),
        occurred_at: -1_000, // before 1970 still round-trips
        source_event_id: "evt_1".into(),
        data: r#"{"carrier":"ups","tracking_number":"1Z999"}"#.into(),
    }
}

fn state_record() -> StateRecord {
    StateRecord {
        key: "agg/customer/acme/c-42".into(),
        kind: StateKind::Aggregate,
        epoch: 2,
        sequence: 991,
        value: Some(vec![0, 1, 2, 255]),
    }
}

fn state_tombstone() -> StateRecord {
    StateRecord {
        key: "idem/acme/shopify/b54557e4".into(),
        kind: StateKind::Other("snapshot".into()),
        epoch: 2,
        sequence: 992,
        value: None,
    }
}

fn marker() -> CommitMarker {
    CommitMarker {
        epoch: 2,
        sequence: 992,
        record_count: 57,
        input_positions: vec![
            InputPosition {
                topic: "storefold.raw.shopify".into(),
                partition: 3,
                next_offset: 1_204,
            },
            InputPosition {
                topic: "storefold.raw.stripe".into(),
                partition: 3,
                next_offset: 0,
            },
        ],
        flushed_batch: 991,
    }
}

fn codec() -> AvroCodec {
    AvroCodec::embedded().expect("embedded schemas load")
}

/// A codec with Confluent ids 1..=6 bound to the current schemas.
fn confluent_codec() -> AvroCodec {
    let mut codec = codec();
    for (i, kind) in RecordKind::ALL.into_iter().enumerate() {
        codec.bind_schema_id(id_of(i), kind).unwrap();
    }
    codec
}

fn id_of(i: usize) -> u32 {
    u32::try_from(i).unwrap() + 1
}

fn confluent_id(kind: RecordKind) -> u32 {
    id_of(RecordKind::ALL.iter().position(|k| *k == kind).unwrap())
}

/// Every sample, encoded in both formats with `confluent_codec()`.
fn all_encodings() -> Vec<(RecordKind, Vec<u8>)> {
    fn both<T: AvroRecord>(codec: &AvroCodec, v: &T, out: &mut Vec<(RecordKind, Vec<u8>)>) {
        out.push((T::KIND, codec.encode(v, WireFormat::SingleObject).unwrap()));
        let fmt = WireFormat::Confluent {
            schema_id: confluent_id(T::KIND),
        };
        out.push((T::KIND, codec.encode(v, fmt).unwrap()));
    }
    let codec = confluent_codec();
    let mut out = Vec::new();
    both(&codec, &raw_event(), &mut out);
    both(&codec, &raw_event_unsigned(), &mut out);
    both(&codec, &customer(), &mut out);
    both(&codec, &customer_merged(), &mut out);
    both(&codec, &order(), &mut out);
    both(&codec, &order_orphan(), &mut out);
    both(&codec, &payout(), &mut out);
    both(&codec, &payout_lines_only(), &mut out);
    both(&codec, &trigger(), &mut out);
    both(&codec, &state_record(), &mut out);
    both(&codec, &state_tombstone(), &mut out);
    both(&codec, &marker(), &mut out);
    out
}

/// Decodes `bytes` as the record `kind`, returning only whether it worked.
fn decode_as(codec: &AvroCodec, kind: RecordKind, bytes: &[u8]) -> Result<(), Error> {
    match kind {
        RecordKind::RawEvent => codec.decode::<RawEvent>(bytes).map(drop),
        RecordKind::CustomerProjection => codec.decode::<CustomerProjection>(bytes).map(drop),
        RecordKind::OrderProjection => codec.decode::<OrderProjection>(bytes).map(drop),
        RecordKind::PayoutProjection => codec.decode::<PayoutProjection>(bytes).map(drop),
        RecordKind::Trigger => codec.decode::<Trigger>(bytes).map(drop),
        RecordKind::StateRecord => codec.decode::<StateRecord>(bytes).map(drop),
        RecordKind::CommitMarker => codec.decode::<CommitMarker>(bytes).map(drop),
    }
}

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

// ---------------------------------------------------------------------------------
// round trips

fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(value: &T) {
    let codec = confluent_codec();
    let single = codec.encode(value, WireFormat::SingleObject).unwrap();
    assert_eq!(&codec.decode::<T>(&single).unwrap(), value, "single object");
    let fmt = WireFormat::Confluent {
        schema_id: confluent_id(T::KIND),
    };
    let confluent = codec.encode(value, fmt).unwrap();
    assert_eq!(&codec.decode::<T>(&confluent).unwrap(), value, "confluent");
    // Same datum behind both headers.
    assert_eq!(single[10..], confluent[5..]);
    assert_eq!(codec.kind_of(&single).unwrap(), T::KIND);
    assert_eq!(codec.kind_of(&confluent).unwrap(), T::KIND);
}

#[test]
fn raw_event_round_trips() {
    round_trip(&raw_event());
    round_trip(&raw_event_unsigned());
}

#[test]
fn customer_projection_round_trips() {
    round_trip(&customer());
    round_trip(&customer_merged());
}

#[test]
fn order_projection_round_trips() {
    round_trip(&order());
    round_trip(&order_orphan());
}

#[test]
fn payout_projection_round_trips() {
    round_trip(&payout());
    round_trip(&payout_lines_only());
}

#[test]
fn trigger_round_trips() {
    round_trip(&trigger());
    round_trip(&Trigger {
        order_id: None,
        ..trigger()
    });
}

#[test]
fn state_record_round_trips() {
    round_trip(&state_record());
    round_trip(&state_tombstone());
    for kind in [
        StateKind::Aggregate,
        StateKind::Index,
        StateKind::Idempotency,
        StateKind::Parked,
        StateKind::Meta,
        StateKind::Marker,
        StateKind::Fence,
    ] {
        round_trip(&StateRecord {
            kind,
            value: Some(Vec::new()),
            ..state_record()
        });
    }
}

#[test]
fn commit_marker_round_trips() {
    round_trip(&marker());
    round_trip(&CommitMarker {
        input_positions: Vec::new(),
        flushed_batch: -1,
        ..marker()
    });
}

#[test]
fn marker_nests_in_a_state_record() {
    let codec = codec();
    let inner = codec.encode(&marker(), WireFormat::SingleObject).unwrap();
    let record = StateRecord {
        key: "marker/2".into(),
        kind: StateKind::Marker,
        epoch: 2,
        sequence: 992,
        value: Some(inner),
    };
    let outer = codec.encode(&record, WireFormat::SingleObject).unwrap();
    let back = codec.decode::<StateRecord>(&outer).unwrap();
    assert_eq!(back.kind, StateKind::Marker);
    let m = codec.decode::<CommitMarker>(&back.value.unwrap()).unwrap();
    assert_eq!(m, marker());
}

#[test]
fn the_codec_can_be_shared_between_tasks() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<AvroCodec>();
}

/// The datum after the header is exactly what a writer built from the schema
/// for that one value writes (the codec keeps its writers between records; this
/// pins that keeping them changes no byte).
#[test]
fn the_datum_is_what_a_fresh_apache_avro_writer_writes() {
    fn check<T: AvroRecord + std::fmt::Debug>(codec: &AvroCodec, value: &T) {
        let bytes = codec.encode(value, WireFormat::SingleObject).unwrap();
        let fresh = GenericDatumWriter::builder(codec.schema(T::KIND))
            .build()
            .unwrap()
            .write_ser_to_vec(value)
            .unwrap();
        assert_eq!(&bytes[10..], &fresh[..], "{value:?}");
        // Twice in a row, and after a record of another size.
        assert_eq!(
            codec.encode(value, WireFormat::SingleObject).unwrap(),
            bytes
        );
    }
    let codec = codec();
    check(&codec, &raw_event());
    check(&codec, &raw_event_unsigned());
    check(&codec, &customer());
    check(&codec, &customer_merged());
    check(&codec, &order());
    check(&codec, &order_orphan());
    check(&codec, &trigger());
    check(&codec, &state_record());
    check(&codec, &marker());
    check(&codec, &raw_event());
}

#[test]
fn encoding_is_deterministic() {
    let codec = codec();
    let mut ev = raw_event();
    for i in 0..50 {
        ev.headers.insert(format!("x-h-{i}"), i.to_string());
    }
    let first = codec.encode(&ev, WireFormat::SingleObject).unwrap();
    for _ in 0..10 {
        assert_eq!(codec.encode(&ev, WireFormat::SingleObject).unwrap(), first);
    }
    // And it is the same bytes a fresh codec writes.
    assert_eq!(
        AvroCodec::embedded()
            .unwrap()
            .encode(&ev, WireFormat::SingleObject)
            .unwrap(),
        first
    );
}

#[test]
fn datum_is_plain_avro_binary() {
    // Pin the datum encoding of a small record against the Avro spec by hand:
    // strings are zig-zag length + UTF-8, longs zig-zag varints, null branch index 0.
    let codec = codec();
    let rec = StateRecord {
        key: "k".into(),
        kind: StateKind::Fence,
        epoch: 1,
        sequence: -1,
        value: None,
    };
    let bytes = codec.encode(&rec, WireFormat::SingleObject).unwrap();
    let mut expected = vec![0x02, b'k', 0x0a];
    expected.extend_from_slice(b"fence");
    expected.extend_from_slice(&[0x02, 0x01, 0x00]);
    assert_eq!(&bytes[10..], &expected[..]);
}

// ---------------------------------------------------------------------------------
// headers

/// CRC-64-AVRO exactly as the Avro specification gives it ("Schema Fingerprints"),
/// written here again so the library's copy is checked against an independent one.
fn spec_crc64(data: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let mut table = [0u64; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut fp = i as u64;
        for _ in 0..8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
        }
        *slot = fp;
    }
    let mut fp = EMPTY;
    for &b in data {
        fp = (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

#[test]
fn crc64_avro_matches_the_spec_test_vectors() {
    // From Avro's share/test/data/schema-tests.txt (signed 64-bit values).
    let vectors: [(&[u8], i64); 4] = [
        (br#""null""#, 7_195_948_357_588_979_594),
        (br#""boolean""#, -6_970_731_678_124_411_036),
        (br#"{"name":"foo","type":"fixed","size":15}"#, 1_756_455_273_707_447_556),
        (
            br#"{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}"#,
            -1_759_257_747_318_642_341,
        ),
    ];
    for (data, expected) in vectors {
        assert_eq!(spec_crc64(data) as i64, expected);
        assert_eq!(storefold_codec::crc64_avro(data) as i64, expected);
    }
}

#[test]
fn canonical_form_follows_the_spec() {
    let codec = codec();
    // Pinned by hand from the spec's transformation rules: full names, only
    // name/type/fields/symbols/items/values/size, primitives in simple form (a
    // logical type is its underlying type), no whitespace.
    assert_eq!(
        codec.canonical_form(RecordKind::StateRecord),
        concat!(
            r#"{"name":"io.storefold.StateRecord","type":"record","fields":["#,
            r#"{"name":"key","type":"string"},{"name":"kind","type":"string"},"#,
            r#"{"name":"epoch","type":"long"},{"name":"sequence","type":"long"},"#,
            r#"{"name":"value","type":["null","bytes"]}]}"#
        )
    );
    let raw = codec.canonical_form(RecordKind::RawEvent);
    assert!(
        raw.contains(r#"{"name":"received_at","type":"long"}"#),
        "{raw}"
    );
    assert!(
        raw.contains(r#"{"name":"headers","type":{"type":"map","values":"string"}}"#),
        "{raw}"
    );
    assert!(
        raw.contains(r#"{"name":"io.storefold.VerificationStatus","type":"enum","symbols":["verified","unsigned"]}"#),
        "{raw}"
    );
    let marker = codec.canonical_form(RecordKind::CommitMarker);
    assert!(
        marker.contains(r#"{"type":"array","items":{"name":"io.storefold.InputPosition","type":"record","fields":["#),
        "{marker}"
    );
    for kind in RecordKind::ALL {
        let pcf = codec.canonical_form(kind);
        assert!(pcf.starts_with(&format!(
            r#"{{"name":"io.storefold.{}","type":"record","fields":["#,
            kind.name()
        )));
        assert!(!pcf.contains(' ') && !pcf.contains("\"doc\":") && !pcf.contains("default"));
        assert!(!pcf.contains("logicalType") && !pcf.contains(r#"{"type":"long"}"#));
        // Same as apache-avro's where its canonical form has no logical-type
        // residue (it keeps `{"type":"long"}` for timestamp-millis).
        let theirs = codec.schema(kind).canonical_form();
        if !theirs.contains(r#"{"type":"long"}"#) {
            assert_eq!(pcf, theirs, "{kind}");
        }
    }
}

#[test]
fn single_object_header_is_marker_and_le_rabin_of_canonical_form() {
    let codec = codec();
    let encodings = all_encodings();
    for kind in RecordKind::ALL {
        let fp = spec_crc64(codec.canonical_form(kind).as_bytes());
        assert_eq!(codec.fingerprint(kind), Fingerprint(fp));
        let mut header = vec![0xC3, 0x01];
        header.extend_from_slice(&fp.to_le_bytes());
        let mut seen = 0;
        for (k, bytes) in &encodings {
            if *k == kind && bytes[0] == 0xC3 {
                assert_eq!(&bytes[..10], &header[..], "{kind}");
                seen += 1;
            }
        }
        assert!(seen > 0, "{kind}");
    }
}

#[test]
fn logical_types_reduce_to_their_primitive_in_the_canonical_form() {
    // As Java's SchemaNormalization writes it (the reference implementation; its
    // single-object encoder fingerprints this text).
    let schema = Schema::parse_str(
        r#"{"type":"record","name":"R","namespace":"n","doc":"d","fields":[
            {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"d","type":{"type":"int","logicalType":"date"}},
            {"name":"u","type":["null",{"type":"string","logicalType":"uuid"}],"default":null},
            {"name":"m","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}}
        ]}"#,
    )
    .unwrap();
    let pcf = storefold_codec::parsing_canonical_form(&schema);
    assert_eq!(
        pcf,
        concat!(
            r#"{"name":"n.R","type":"record","fields":[{"name":"t","type":"long"},"#,
            r#"{"name":"d","type":"int"},{"name":"u","type":["null","string"]},"#,
            r#"{"name":"m","type":"bytes"}]}"#
        )
    );
    assert_eq!(
        Fingerprint::of(&schema),
        Fingerprint(spec_crc64(pcf.as_bytes()))
    );
}

#[test]
fn headers_written_by_apache_avro_are_read_too() {
    // apache-avro 0.22 (like Python's avro 1.12) fingerprints `{"type":"long"}` for a
    // timestamp-millis; its single-object writer's payloads must decode all the same.
    let codec = codec();
    for kind in RecordKind::ALL {
        let header = apache_avro::headers::RabinFingerprintHeader::from_schema(codec.schema(kind));
        let built = apache_avro::headers::HeaderBuilder::build_header(&header);
        assert_eq!(&built[..2], &[0xC3, 0x01]);
        for (k, bytes) in all_encodings() {
            if k == kind && bytes[0] == 0xC3 {
                let mut theirs = built.clone();
                theirs.extend_from_slice(&bytes[10..]);
                decode_as(&codec, kind, &theirs).unwrap();
                assert_eq!(codec.kind_of(&theirs).unwrap(), kind);
            }
        }
    }
    // For a schema without logical types both headers are the same.
    let plain = apache_avro::headers::RabinFingerprintHeader::from_schema(
        codec.schema(RecordKind::StateRecord),
    );
    let mut ours = vec![0xC3, 0x01];
    ours.extend_from_slice(&codec.fingerprint(RecordKind::StateRecord).to_le_bytes());
    assert_eq!(
        apache_avro::headers::HeaderBuilder::build_header(&plain),
        ours
    );
}

#[test]
fn confluent_header_is_zero_and_big_endian_id() {
    let mut codec = codec();
    codec
        .bind_schema_id(0x0102_0304, RecordKind::Trigger)
        .unwrap();
    let bytes = codec
        .encode(
            &trigger(),
            WireFormat::Confluent {
                schema_id: 0x0102_0304,
            },
        )
        .unwrap();
    assert_eq!(&bytes[..5], &[0x00, 0x01, 0x02, 0x03, 0x04]);
    assert_eq!(
        WireFormat::detect(&bytes).unwrap(),
        WireFormat::Confluent {
            schema_id: 0x0102_0304
        }
    );
    let single = codec.encode(&trigger(), WireFormat::SingleObject).unwrap();
    assert_eq!(
        WireFormat::detect(&single).unwrap(),
        WireFormat::SingleObject
    );
    assert_eq!(&bytes[5..], &single[10..]);
}

// ---------------------------------------------------------------------------------
// typed errors

#[test]
fn unknown_schema_id_is_a_typed_error() {
    let codec = confluent_codec();
    let mut bytes = codec
        .encode(&customer(), WireFormat::Confluent { schema_id: 2 })
        .unwrap();
    bytes[1..5].copy_from_slice(&999u32.to_be_bytes());
    let err = codec.decode::<CustomerProjection>(&bytes).unwrap_err();
    assert!(matches!(err, Error::UnknownSchemaId(999)), "{err}");
    assert!(err.is_data_error());
    // A codec that never bound ids knows none.
    let plain = AvroCodec::embedded().unwrap();
    let err = plain
        .decode::<CustomerProjection>(
            &codec
                .encode(&customer(), WireFormat::Confluent { schema_id: 2 })
                .unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, Error::UnknownSchemaId(2)), "{err}");
}

#[test]
fn wrong_fingerprint_is_a_typed_error() {
    let codec = codec();
    let mut bytes = codec.encode(&customer(), WireFormat::SingleObject).unwrap();
    bytes[2] ^= 0xff;
    let err = codec.decode::<CustomerProjection>(&bytes).unwrap_err();
    assert!(matches!(err, Error::UnknownFingerprint(_)), "{err}");
    assert!(err.is_data_error());
}

#[test]
fn another_record_is_a_typed_error() {
    let codec = confluent_codec();
    for fmt in [
        WireFormat::SingleObject,
        WireFormat::Confluent {
            schema_id: confluent_id(RecordKind::Trigger),
        },
    ] {
        let bytes = codec.encode(&trigger(), fmt).unwrap();
        let err = codec.decode::<CustomerProjection>(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                Error::WrongRecord {
                    expected: RecordKind::CustomerProjection,
                    found: RecordKind::Trigger
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn framing_errors_are_typed() {
    let codec = codec();
    assert!(matches!(codec.decode::<Trigger>(&[]), Err(Error::Empty)));
    assert!(matches!(
        codec.decode::<Trigger>(b"{\"json\":true}"),
        Err(Error::UnknownFormat(_))
    ));
    assert!(matches!(
        codec.decode::<Trigger>(&[0xC3]),
        Err(Error::TruncatedHeader { len: 1, needed: 10 })
    ));
    assert!(matches!(
        codec.decode::<Trigger>(&[0xC3, 0x01, 1, 2, 3]),
        Err(Error::TruncatedHeader { len: 5, needed: 10 })
    ));
    assert!(matches!(
        codec.decode::<Trigger>(&[0x00, 0, 0]),
        Err(Error::TruncatedHeader { len: 3, needed: 5 })
    ));
    // C3 followed by anything but 01 is not single-object version 1.
    assert!(matches!(
        codec.decode::<Trigger>(&[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(Error::UnknownFormat(_))
    ));
}

#[test]
fn a_datum_cut_before_its_nullable_tail_is_truncated_not_null() {
    // apache-avro decodes a union index cut off by the end of input as null; the
    // codec must not let a truncated record through with its last fields "null".
    let codec = codec();
    let full = codec
        .encode(&raw_event(), WireFormat::SingleObject)
        .unwrap();
    let tail = 2 + "shopify-hmac-sha256".len() + 2 + raw_event().trace_context.unwrap().len() + 2;
    let cut = &full[..full.len() - tail];
    let err = codec.decode::<RawEvent>(cut).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TruncatedDatum {
                kind: RecordKind::RawEvent
            }
        ),
        "{err}"
    );
    assert!(err.is_data_error());
}

#[test]
fn trailing_bytes_are_rejected() {
    let codec = codec();
    let mut bytes = codec.encode(&trigger(), WireFormat::SingleObject).unwrap();
    bytes.extend_from_slice(&[0, 0]);
    let err = codec.decode::<Trigger>(&bytes).unwrap_err();
    assert!(
        matches!(err, Error::TrailingBytes { count: 2, .. }),
        "{err}"
    );
}

#[test]
fn encoding_with_an_id_of_another_schema_fails() {
    let codec = confluent_codec();
    // Unbound id.
    let err = codec
        .encode(&trigger(), WireFormat::Confluent { schema_id: 77 })
        .unwrap_err();
    assert!(
        matches!(err, Error::SchemaIdMismatch { id: 77, .. }),
        "{err}"
    );
    // Id bound to another record.
    let err = codec
        .encode(
            &trigger(),
            WireFormat::Confluent {
                schema_id: confluent_id(RecordKind::RawEvent),
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::SchemaIdMismatch { .. }), "{err}");
    assert!(!err.is_data_error());
}

#[test]
fn an_id_cannot_be_rebound_to_another_schema() {
    let mut codec = confluent_codec();
    // Rebinding the same id to the same schema is fine (idempotent startup).
    codec.bind_schema_id(1, RecordKind::RawEvent).unwrap();
    let err = codec.bind_schema_id(1, RecordKind::Trigger).unwrap_err();
    assert!(matches!(err, Error::SchemaIdConflict { id: 1 }), "{err}");
}

#[test]
fn every_truncation_of_every_encoding_is_an_error() {
    let codec = confluent_codec();
    for (kind, bytes) in all_encodings() {
        decode_as(&codec, kind, &bytes).unwrap();
        for len in 0..bytes.len() {
            let r = decode_as(&codec, kind, &bytes[..len]);
            let err = r.expect_err(&format!(
                "a strict prefix must not decode: {kind} {len}/{}",
                bytes.len()
            ));
            assert!(err.is_data_error(), "{kind} prefix {len}: {err}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let codec = confluent_codec();
        for kind in RecordKind::ALL {
            let _ = decode_as(&codec, kind, &bytes);
        }
    }

    #[test]
    fn garbage_behind_a_valid_header_never_panics(
        which in 0usize..20,
        datum in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let codec = confluent_codec();
        let encodings = all_encodings();
        let (kind, bytes) = &encodings[which % encodings.len()];
        let header = if bytes[0] == 0xC3 { 10 } else { 5 };
        let mut payload = bytes[..header].to_vec();
        payload.extend_from_slice(&datum);
        let _ = decode_as(&codec, *kind, &payload);
    }

    #[test]
    fn mutated_encodings_never_panic(
        which in 0usize..20,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let codec = confluent_codec();
        let encodings = all_encodings();
        let (kind, bytes) = &encodings[which % encodings.len()];
        let mut payload = bytes.clone();
        for (at, x) in flips {
            let i = at % payload.len();
            payload[i] ^= x;
        }
        let _ = decode_as(&codec, *kind, &payload);
    }

    #[test]
    fn any_customer_round_trips(
        generation in any::<i64>(),
        version in any::<i64>(),
        email in proptest::option::of(".{0,40}"),
        redacted in any::<bool>(),
        updated_at in any::<i64>(),
        doc in ".{0,200}",
    ) {
        let value = CustomerProjection { generation, version, email, redacted, updated_at, doc, ..customer() };
        let codec = codec();
        let bytes = codec.encode(&value, WireFormat::SingleObject).unwrap();
        prop_assert_eq!(codec.decode::<CustomerProjection>(&bytes).unwrap(), value);
    }

    #[test]
    fn any_raw_event_round_trips(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        headers in proptest::collection::btree_map("[a-z-]{1,20}", ".{0,30}", 0..8),
        received_at in any::<i64>(),
    ) {
        let value = RawEvent { body, headers, received_at, ..raw_event() };
        let codec = codec();
        let bytes = codec.encode(&value, WireFormat::SingleObject).unwrap();
        prop_assert_eq!(codec.decode::<RawEvent>(&bytes).unwrap(), value);
    }
}

// ---------------------------------------------------------------------------------
// schema evolution through the codec

/// Edits a schema's JSON: `f` gets the parsed object.
fn edit(kind: RecordKind, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(kind.embedded_json()).unwrap();
    f(&mut v);
    v.to_string()
}

fn fields(v: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    v["fields"].as_array_mut().unwrap()
}

/// Encodes a datum with an arbitrary writer schema, as another build would.
fn write_with(schema: &Schema, value: Value) -> Vec<u8> {
    GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap()
}

/// The customer projection schema before `merged_into` and `redacted` existed.
fn customer_v0() -> String {
    edit(RecordKind::CustomerProjection, |v| {
        fields(v).retain(|f| f["name"] != "merged_into" && f["name"] != "redacted");
    })
}

fn customer_v0_datum(schema: &Schema) -> Vec<u8> {
    let mut r = Record::new(schema).unwrap();
    r.put("tenant", "acme");
    r.put("customer_id", "c-1");
    r.put("generation", 1i64);
    r.put("version", 2i64);
    r.put(
        "email",
        Value::Union(1, Box::new(Value::String("a@b.c".into()))),
    );
    r.put("phone", Value::Union(0, Box::new(Value::Null)));
    r.put("updated_at", Value::TimestampMillis(5));
    r.put("doc", "{}");
    write_with(schema, r.into())
}

#[test]
fn data_of_an_older_registered_schema_reads_with_defaults() {
    let mut codec = confluent_codec();
    let v0_json = customer_v0();
    let v0 = Schema::parse_str(&v0_json).unwrap();
    let datum = customer_v0_datum(&v0);

    let mut single = vec![0xC3, 0x01];
    single.extend_from_slice(&Fingerprint::of(&v0).to_le_bytes());
    single.extend_from_slice(&datum);
    // Unknown until registered.
    assert!(matches!(
        codec.decode::<CustomerProjection>(&single),
        Err(Error::UnknownFingerprint(_))
    ));
    let fp = codec
        .register_writer_schema(RecordKind::CustomerProjection, &v0_json)
        .unwrap();
    assert_eq!(fp, Fingerprint::of(&v0));
    let got = codec.decode::<CustomerProjection>(&single).unwrap();
    assert_eq!(got.email.as_deref(), Some("a@b.c"));
    assert!(!got.redacted);
    assert_eq!(got.merged_into, None);
    assert_eq!(got.updated_at, 5);

    // Same through a Confluent id fetched from a registry.
    codec
        .register_schema_id(41, RecordKind::CustomerProjection, &v0_json)
        .unwrap();
    let mut confluent = vec![0x00, 0, 0, 0, 41];
    confluent.extend_from_slice(&datum);
    assert_eq!(codec.decode::<CustomerProjection>(&confluent).unwrap(), got);
    // An old id can be read but never written with.
    assert!(matches!(
        codec.encode(&customer(), WireFormat::Confluent { schema_id: 41 }),
        Err(Error::SchemaIdMismatch { id: 41, .. })
    ));
}

#[test]
fn unknown_enum_symbol_from_a_newer_writer_reads_as_the_default() {
    let mut codec = codec();
    let newer_json = edit(RecordKind::RawEvent, |v| {
        let verification = fields(v)
            .iter_mut()
            .find(|f| f["name"] == "verification")
            .unwrap();
        let status = &mut verification["type"]["fields"][0]["type"]["symbols"];
        status.as_array_mut().unwrap().push("url_token".into());
    });
    codec
        .register_writer_schema(RecordKind::RawEvent, &newer_json)
        .unwrap();
    let newer = Schema::parse_str(&newer_json).unwrap();
    let mut verification = Record::new(match &newer {
        Schema::Record(r) => {
            &r.fields
                .iter()
                .find(|f| f.name == "verification")
                .unwrap()
                .schema
        }
        _ => unreachable!(),
    })
    .unwrap();
    verification.put("status", Value::Enum(2, "url_token".into()));
    verification.put(
        "scheme",
        Value::Union(1, Box::new(Value::String("woo-token".into()))),
    );
    let mut r = Record::new(&newer).unwrap();
    r.put("event_id", "e");
    r.put("tenant", "acme");
    r.put("provider", "woocommerce");
    r.put("topic", "order.created");
    r.put("received_at", Value::TimestampMillis(1));
    r.put("headers", Value::Map(Default::default()));
    r.put("body", Value::Bytes(b"{}".to_vec()));
    r.put("verification", verification);
    r.put("trace_context", Value::Union(0, Box::new(Value::Null)));
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&Fingerprint::of(&newer).to_le_bytes());
    bytes.extend_from_slice(&write_with(&newer, r.into()));
    let got = codec.decode::<RawEvent>(&bytes).unwrap();
    assert_eq!(got.verification.status, VerificationStatus::Unsigned);
    assert_eq!(got.verification.scheme.as_deref(), Some("woo-token"));
}

#[test]
fn an_unreadable_writer_schema_is_refused() {
    let mut codec = codec();
    let bad = edit(RecordKind::Trigger, |v| {
        let f = fields(v)
            .iter_mut()
            .find(|f| f["name"] == "occurred_at")
            .unwrap();
        f["type"] = "string".into();
    });
    let err = codec
        .register_writer_schema(RecordKind::Trigger, &bad)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::IncompatibleWriter {
                kind: RecordKind::Trigger,
                ..
            }
        ),
        "{err}"
    );
    let err = codec
        .register_schema_id(9, RecordKind::RawEvent, RecordKind::Trigger.embedded_json())
        .unwrap_err();
    assert!(matches!(err, Error::WrongSchemaName { .. }), "{err}");
}

// ---------------------------------------------------------------------------------
// schema files

#[test]
fn schema_files_load_and_match_the_embedded_copies() {
    let from_dir = AvroCodec::from_dir(&schemas_dir()).unwrap();
    let embedded = codec();
    for kind in RecordKind::ALL {
        assert_eq!(
            from_dir.fingerprint(kind),
            embedded.fingerprint(kind),
            "{kind}"
        );
        let schema = embedded.schema(kind);
        assert_eq!(schema.name().unwrap().fullname(None), kind.full_name());
        assert!(schema.doc().is_some(), "{kind} has a doc string");
    }
    // Fingerprints are distinct, so a single-object header names one record.
    let mut fps: Vec<_> = RecordKind::ALL
        .iter()
        .map(|k| embedded.fingerprint(*k))
        .collect();
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), RecordKind::ALL.len());
}

#[test]
fn from_dir_reports_a_missing_file() {
    let dir = scratch_dir("missing");
    let err = AvroCodec::from_dir(&dir).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn every_field_is_documented() {
    fn walk(v: &serde_json::Value, path: &str) {
        if let Some(fields) = v.get("fields").and_then(|f| f.as_array()) {
            for f in fields {
                let name = f["name"].as_str().unwrap();
                assert!(f.get("doc").is_some(), "{path}.{name} has no doc");
                walk(&f["type"], &format!("{path}.{name}"));
                if let Some(items) = f["type"].get("items") {
                    walk(items, &format!("{path}.{name}[]"));
                }
            }
        }
    }
    for kind in RecordKind::ALL {
        let v: serde_json::Value = serde_json::from_str(kind.embedded_json()).unwrap();
        assert_eq!(v["namespace"], "io.storefold");
        walk(&v, kind.name());
    }
}

#[test]
fn record_kind_names_parse() {
    for kind in RecordKind::ALL {
        assert_eq!(kind.name().parse::<RecordKind>().unwrap(), kind);
        assert_eq!(kind.full_name().parse::<RecordKind>().unwrap(), kind);
        assert_eq!(kind.file_name().parse::<RecordKind>().unwrap(), kind);
        assert_eq!(RecordKind::from_file_name(kind.file_name()), Some(kind));
    }
    assert!("Nope".parse::<RecordKind>().is_err());
}

// ---------------------------------------------------------------------------------
// backward compatibility

const V1: &str = r#"{"type":"record","name":"Thing","namespace":"io.storefold","fields":[
    {"name":"id","type":"string"},
    {"name":"count","type":"int"},
    {"name":"color","type":{"type":"enum","name":"Color","symbols":["red","green"]}}
]}"#;

fn v1_with(f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(V1).unwrap();
    f(&mut v);
    v.to_string()
}

#[test]
fn adding_a_field_with_a_default_is_compatible() {
    let v2 = v1_with(|v| {
        fields(v).push(serde_json::json!({"name":"note","type":["null","string"],"default":null}))
    });
    check_backward(V1, &v2).unwrap();
    check_backward(V1, V1).unwrap();
}

#[test]
fn adding_a_field_without_a_default_is_not() {
    let v2 = v1_with(|v| fields(v).push(serde_json::json!({"name":"note","type":"string"})));
    let err = check_backward(V1, &v2).unwrap_err();
    assert!(matches!(err, CompatError::Incompatible(_)), "{err}");
    assert!(err.to_string().contains("note"), "{err}");
}

#[test]
fn changing_a_field_type_is_not() {
    let v2 = v1_with(|v| fields(v)[0]["type"] = "long".into());
    let err = check_backward(V1, &v2).unwrap_err();
    assert!(matches!(err, CompatError::Incompatible(_)), "{err}");
    // Narrowing is a type change too.
    let wide = v1_with(|v| fields(v)[1]["type"] = "long".into());
    assert!(check_backward(&wide, V1).is_err());
}

#[test]
fn promotions_are_compatible() {
    let v2 = v1_with(|v| fields(v)[1]["type"] = "long".into());
    check_backward(V1, &v2).unwrap();
    let v3 = v1_with(|v| fields(v)[1]["type"] = "double".into());
    check_backward(V1, &v3).unwrap();
}

#[test]
fn renaming_a_field_needs_an_alias() {
    let renamed = v1_with(|v| fields(v)[1]["name"] = "total".into());
    let err = check_backward(V1, &renamed).unwrap_err();
    assert!(matches!(err, CompatError::Incompatible(_)), "{err}");
    let aliased = v1_with(|v| {
        fields(v)[1]["name"] = "total".into();
        fields(v)[1]["aliases"] = serde_json::json!(["count"]);
    });
    check_backward(V1, &aliased).unwrap();
}

#[test]
fn removing_a_field_is_compatible() {
    let v2 = v1_with(|v| {
        fields(v).remove(1);
    });
    check_backward(V1, &v2).unwrap();
}

#[test]
fn enums_may_add_symbols_and_lose_them_only_with_a_default() {
    let added =
        v1_with(|v| fields(v)[2]["type"]["symbols"] = serde_json::json!(["red", "green", "blue"]));
    check_backward(V1, &added).unwrap();
    let removed = v1_with(|v| fields(v)[2]["type"]["symbols"] = serde_json::json!(["red"]));
    let err = check_backward(V1, &removed).unwrap_err();
    assert!(matches!(err, CompatError::Partial), "{err}");
    let removed_with_default = v1_with(|v| {
        fields(v)[2]["type"]["symbols"] = serde_json::json!(["red"]);
        fields(v)[2]["type"]["default"] = "red".into();
    });
    check_backward(V1, &removed_with_default).unwrap();
}

#[test]
fn making_a_field_nullable_is_compatible_and_back_is_not() {
    let nullable = v1_with(|v| fields(v)[0]["type"] = serde_json::json!(["null", "string"]));
    check_backward(V1, &nullable).unwrap();
    assert!(check_backward(&nullable, V1).is_err());
}

#[test]
fn renaming_the_record_is_not() {
    let other_ns = v1_with(|v| v["namespace"] = "io.elsewhere".into());
    let err = check_backward(V1, &other_ns).unwrap_err();
    assert!(matches!(err, CompatError::Renamed { .. }), "{err}");
    let other_name = v1_with(|v| v["name"] = "Other".into());
    assert!(check_backward(V1, &other_name).is_err());
}

#[test]
fn a_schema_that_does_not_parse_is_reported() {
    let err = check_backward(V1, "{not json").unwrap_err();
    assert!(
        matches!(
            err,
            CompatError::Parse {
                side: storefold_codec::Side::Current,
                ..
            }
        ),
        "{err}"
    );
    let err = check_backward(r#"{"type":"nope"}"#, V1).unwrap_err();
    assert!(
        matches!(
            err,
            CompatError::Parse {
                side: storefold_codec::Side::Previous,
                ..
            }
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// check_dir

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("codec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_dir_reports_each_schema() {
    let dir = scratch_dir("check");
    let thing_v2 =
        v1_with(|v| fields(v).push(serde_json::json!({"name":"n","type":"long","default":0})));
    let broken_v2 = v1_with(|v| {
        v["name"] = "Broken".into();
        fields(v).push(serde_json::json!({"name":"n","type":"long"}));
    });
    let broken_v1 = v1_with(|v| v["name"] = "Broken".into());
    std::fs::write(dir.join("thing.avsc"), &thing_v2).unwrap();
    std::fs::write(dir.join("broken.avsc"), &broken_v2).unwrap();
    std::fs::write(dir.join("fresh.avsc"), V1).unwrap();
    std::fs::write(dir.join("same.avsc"), V1).unwrap();
    std::fs::write(dir.join("junk.avsc"), "[").unwrap();
    std::fs::write(dir.join("README.md"), "not a schema").unwrap();
    // A file named for a storefold record must hold it.
    std::fs::write(dir.join("trigger.avsc"), V1).unwrap();

    let reports = check_dir(&dir, |file| match file {
        "thing.avsc" => Some(V1.to_owned()),
        "broken.avsc" => Some(broken_v1.clone()),
        // Whitespace differences do not count as a change.
        "same.avsc" => Some(V1.replace('\n', " ")),
        _ => None,
    })
    .unwrap();
    let got: Vec<(&str, &str, bool)> = reports
        .iter()
        .map(|r| {
            let o = match &r.outcome {
                SchemaOutcome::New => "new",
                SchemaOutcome::Unchanged => "unchanged",
                SchemaOutcome::Compatible => "compatible",
                SchemaOutcome::Failed(_) => "failed",
            };
            (r.file_name.as_str(), o, r.is_ok())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("broken.avsc", "failed", false),
            ("fresh.avsc", "new", true),
            ("junk.avsc", "failed", false),
            ("same.avsc", "unchanged", true),
            ("thing.avsc", "compatible", true),
            ("trigger.avsc", "failed", false),
        ]
    );
    assert!(matches!(
        &reports[5].outcome,
        SchemaOutcome::Failed(CompatError::WrongRecord { .. })
    ));
    assert_eq!(reports[4].record.as_deref(), Some("io.storefold.Thing"));
}

#[test]
fn check_dir_of_an_empty_or_missing_directory_fails() {
    let dir = scratch_dir("empty");
    assert!(check_dir(&dir, |_| None).is_err());
    assert!(check_dir(&dir.join("nope"), |_| None).is_err());
}

#[test]
fn repository_schemas_are_new_or_compatible_with_git_head() {
    // The contract test of ARCHITECTURE.md §3: each schema change is backward
    // compatible with the previous committed version. Without git (or outside a
    // repository) every schema is checked as new.
    let dir = schemas_dir();
    let reports = check_dir(&dir, |file| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .arg("show")
            .arg(format!("HEAD:./{file}"))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .unwrap();
    assert_eq!(reports.len(), RecordKind::ALL.len());
    for r in &reports {
        assert!(r.is_ok(), "{}: {:?}", r.file_name, r.outcome);
    }
}
