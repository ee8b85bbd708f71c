//! The text form of a job id (used by serde, so by JSON surfaces and the CLI).

use taskforge_protocol::JobId;

#[test]
fn job_ids_print_and_parse_as_uuid_text() {
    let id = JobId([
        0x01, 0x9a, 0xca, 0xf6, 0x6c, 0x00, 0x7c, 0x3e, 0x9d, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
        0x01,
    ]);
    let text = id.to_string();
    assert_eq!(text, "019acaf6-6c00-7c3e-9d12-3456789abc01");
    assert_eq!(text.parse::<JobId>(), Ok(id));
    assert_eq!("019ACAF66C007C3E9D123456789ABC01".parse::<JobId>(), Ok(id));
}

#[test]
fn job_id_text_must_be_32_hex_digits() {
    for bad in [
        "",
        "019acaf6-6c00-7c3e-9d12-3456789abc0",
        "019acaf6-6c00-7c3e-9d12-3456789abc011",
        "019acaf6-6c00-7c3e-9d12-3456789abcxz",
        // `u8::from_str_radix` alone accepts a leading `+`: "+1" would parse as 0x01.
        "+19acaf6-6c00-7c3e-9d12-3456789abc01",
        "019acaf6-6c00-7c3e-9d12-3456789ab+01",
        "019acaf6-6c00-7c3e-9d12-3456789abcé",
    ] {
        assert!(bad.parse::<JobId>().is_err(), "{bad:?} parsed");
    }
}
