use super::*;

#[test]
fn crc32_known_vector() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn record_roundtrip_and_torn_tail() {
    let ops = vec![Op::put("a", b"1".to_vec()), Op::delete("b")];
    let rec = encode_record(7, &ops);
    let p = Path::new("x");
    let parsed = parse_records(&rec, 0, p).unwrap();
    assert_eq!(parsed.records, vec![Record::Txn(7, ops.clone())]);
    assert!(!parsed.torn);
    for cut in 0..rec.len() {
        let parsed = parse_records(&rec[..cut], 0, p).unwrap();
        assert!(parsed.records.is_empty());
        assert!(cut == 0 || parsed.torn, "cut {cut}");
        assert_eq!(parsed.consumed, 0);
    }
    // A damaged record followed by a good one is corruption, not a tail.
    let mut two = rec.clone();
    two[HEADER] ^= 0xFF;
    two.extend_from_slice(&rec);
    assert!(matches!(
        parse_records(&two, 0, p),
        Err(StoreError::Corrupt { offset: 0, .. })
    ));
}
