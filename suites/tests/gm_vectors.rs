//! Published test vectors of the GM algorithms, checked through the suite's
//! public API (and, for SM4, through the same OpenSSL cipher the suite
//! fetches):
//! - SM3: GB/T 32905-2016 appendix A, examples 1 and 2.
//! - SM4: GB/T 32907-2016 appendix A, example 1 (one block) and example 2
//!   (1 000 000 encryptions).
//! - HMAC-SM3: GM/T 0042-2015 appendix D.3 (two examples).
//! - SM4-GCM: RFC 8998 appendix A.1 (the payload chunk cipher of GM
//!   format 2).
//! - SM2: GB/T 32918.2-2016 appendix A / GM/T 0003.5 on the recommended
//!   curve: public key, ID "1234567812345678", message "message digest",
//!   Z_A, e, r, s (the same values OpenSSL's test/sm2_internal_test.c
//!   uses).

use ferry_protocol::suite::LinkCrypto;
use ferry_suites::gm::{self, GmError, DEFAULT_DISTINGUISHING_ID};
use openssl::bn::BigNum;
use openssl::cipher::Cipher;
use openssl::cipher_ctx::CipherCtx;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::PKey;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(s.len() % 2, 0, "hex length");
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex digit"))
        .collect()
}

fn unhex32(s: &str) -> [u8; 32] {
    unhex(s).try_into().expect("32 bytes")
}

// GB/T 32918.2 appendix A on the recommended curve.
const SM2_D: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";
const SM2_XA: &str = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020";
const SM2_YA: &str = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";
const SM2_ZA: &str = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3";
const SM2_E: &str = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640";
const SM2_R: &str = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3";
const SM2_S: &str = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";
const SM2_MSG: &[u8] = b"message digest";

fn standard_public_key() -> Vec<u8> {
    gm::sm2_public_from_coordinates(&unhex32(SM2_XA), &unhex32(SM2_YA)).expect("standard point")
}

fn standard_signature() -> Vec<u8> {
    let r = BigNum::from_slice(&unhex(SM2_R)).expect("r");
    let s = BigNum::from_slice(&unhex(SM2_S)).expect("s");
    EcdsaSig::from_private_components(r, s)
        .expect("sig")
        .to_der()
        .expect("der")
}

#[test]
fn openssl_provides_the_suite() {
    gm::ensure_available().expect("this machine's OpenSSL has SM2, SM3 and SM4-CTR");
}

#[test]
fn sm3_gbt32905_examples() {
    assert_eq!(
        gm::sm3(b"abc").to_vec(),
        unhex("66c7f0f4 62eeedd9 d1f2d46b dc10e4e2 4167c487 5cf2f7a2 297da02b 8f4ba8e0")
    );
    let abcd16 = b"abcd".repeat(16);
    assert_eq!(
        gm::sm3(&abcd16).to_vec(),
        unhex("debe9ff9 2275b8a1 38604889 c18e5a4d 6fdb70e5 387e5765 293dcba3 9c0c5732")
    );
    // The suite's incremental payload digest gives the same, split anywhere.
    let mut d = gm::GmLink.new_digest();
    d.update(&abcd16[..5]);
    d.update(&abcd16[5..]);
    assert_eq!(d.finish(), gm::sm3(&abcd16).to_vec());
}

fn sm4(mode: &str, key: &[u8], iv: Option<&[u8]>, data: &mut [u8]) {
    let cipher = Cipher::fetch(None, mode, None).expect("cipher");
    let mut ctx = CipherCtx::new().expect("ctx");
    ctx.encrypt_init(Some(&cipher), Some(key), iv)
        .expect("init");
    ctx.set_padding(false);
    // Block modes want one spare block of output room.
    let mut out = vec![0u8; data.len() + 16];
    let n = ctx.cipher_update(data, Some(&mut out)).expect("update");
    assert_eq!(n, data.len());
    data.copy_from_slice(&out[..n]);
}

#[test]
fn sm4_gbt32907_examples() {
    let key = unhex("0123456789abcdeffedcba9876543210");
    let expected = unhex("681edf34d206965e86b3e94f536e4246");
    let mut block = key.clone();
    sm4("SM4-ECB", &key, None, &mut block);
    assert_eq!(block, expected);
    // CTR, under the suite's GCM: the first keystream block is E_K(IV).
    let mut zeros = [0u8; 16];
    sm4("SM4-CTR", &key, Some(&key), &mut zeros);
    assert_eq!(zeros.to_vec(), expected);
    // Example 2: the plaintext encrypted 1 000 000 times under the key.
    let cipher = Cipher::fetch(None, "SM4-ECB", None).expect("cipher");
    let mut ctx = CipherCtx::new().expect("ctx");
    ctx.encrypt_init(Some(&cipher), Some(&key), None)
        .expect("init");
    ctx.set_padding(false);
    let mut block = [0u8; 32];
    block[..16].copy_from_slice(&key);
    let mut out = [0u8; 32];
    for _ in 0..1_000_000 {
        ctx.cipher_update(&block[..16], Some(&mut out))
            .expect("update");
        block[..16].copy_from_slice(&out[..16]);
    }
    assert_eq!(
        block[..16].to_vec(),
        unhex("595298c7c6fd271f0402f804c33d3f66")
    );
}

#[test]
fn sm4_gcm_rfc8998_example() {
    let key: [u8; 16] = unhex("0123456789ABCDEFFEDCBA9876543210")
        .try_into()
        .expect("16");
    let nonce: [u8; 12] = unhex("00001234567800000000ABCD").try_into().expect("12");
    let aad = unhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2");
    let plain = unhex(concat!(
        "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD",
        "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA"
    ));
    let mut data = plain.clone();
    let tag = gm::sm4_gcm_encrypt(&key, &nonce, &aad, &mut data).expect("seal");
    assert_eq!(
        data,
        unhex(concat!(
            "17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735",
            "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
        ))
    );
    assert_eq!(tag.to_vec(), unhex("83DE3541E4C2B58177E065A9BF7B62EC"));
    gm::sm4_gcm_decrypt(&key, &nonce, &aad, &mut data, &tag).expect("open");
    assert_eq!(data, plain);
}

#[test]
fn hmac_sm3_gmt0042_examples() {
    let input = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".repeat(2);
    let key: Vec<u8> = (1u8..=0x20).collect();
    assert_eq!(
        gm::hmac_sm3(&key, &input).expect("hmac").to_vec(),
        unhex("ca05e144ed05d1857840d1f318a4a8669e559fc8391f414485bfdf7bb408963a")
    );
    let key: Vec<u8> = (1u8..=0x25).collect();
    assert_eq!(
        gm::hmac_sm3(&key, &[0xcd; 50]).expect("hmac").to_vec(),
        unhex("220bf579ded555393f0159f66c99877822a3ecf610d1552154b41d44b94db3ae")
    );
}

#[test]
fn sm2_gbt32918_z_a_and_e() {
    let public = standard_public_key();
    let z = gm::sm2_z(&public, DEFAULT_DISTINGUISHING_ID).expect("Z_A");
    assert_eq!(z.to_vec(), unhex(SM2_ZA));
    let mut z_m = z.to_vec();
    z_m.extend_from_slice(SM2_MSG);
    assert_eq!(gm::sm3(&z_m).to_vec(), unhex(SM2_E));
}

#[test]
fn sm2_gbt32918_signature_verifies() {
    let public = standard_public_key();
    let sig = standard_signature();
    gm::sm2_verify(&public, DEFAULT_DISTINGUISHING_ID, SM2_MSG, &sig)
        .expect("the standard's signature verifies");
    // ... and only for its message, ID and key.
    assert!(matches!(
        gm::sm2_verify(&public, DEFAULT_DISTINGUISHING_ID, b"message digesT", &sig),
        Err(GmError::BadSignature)
    ));
    assert!(matches!(
        gm::sm2_verify(&public, b"ALICE123@YAHOO.COM", SM2_MSG, &sig),
        Err(GmError::BadSignature)
    ));
    let (_, other) = gm::generate_sm2().expect("other key");
    assert!(matches!(
        gm::sm2_verify(&other, DEFAULT_DISTINGUISHING_ID, SM2_MSG, &sig),
        Err(GmError::BadSignature)
    ));
    // s' = s + 1 must not verify either.
    let r = BigNum::from_slice(&unhex(SM2_R)).expect("r");
    let mut s = BigNum::from_slice(&unhex(SM2_S)).expect("s");
    s.add_word(1).expect("s+1");
    let bent = EcdsaSig::from_private_components(r, s)
        .expect("sig")
        .to_der()
        .expect("der");
    assert!(gm::sm2_verify(&public, DEFAULT_DISTINGUISHING_ID, SM2_MSG, &bent).is_err());
}

/// The standard's private key d as PKCS#8 (typed SM2 once decoded).
fn standard_private_key() -> Vec<u8> {
    let group = EcGroup::from_curve_name(Nid::SM2).expect("group");
    let d = BigNum::from_slice(&unhex(SM2_D)).expect("d");
    let x = BigNum::from_slice(&unhex(SM2_XA)).expect("x");
    let y = BigNum::from_slice(&unhex(SM2_YA)).expect("y");
    let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
    let mut point = EcPoint::new(&group).expect("point");
    point
        .set_affine_coordinates_gfp(&group, &x, &y, &mut ctx)
        .expect("coordinates");
    let key = EcKey::from_private_components(&group, &d, &point).expect("key");
    key.check_key().expect("d matches the public point");
    PKey::from_ec_key(key)
        .expect("pkey")
        .private_key_to_pkcs8()
        .expect("pkcs8")
}

#[test]
fn sm2_signature_by_the_standard_key_verifies_under_its_public_key() {
    let private = standard_private_key();
    assert_eq!(
        gm::sm2_public_from_private(&private).expect("public"),
        standard_public_key()
    );
    // k is random, so r and s differ from the standard's; the signature
    // must still verify as an SM2 signature over Z_A || M.
    let sig = gm::sm2_sign(&private, DEFAULT_DISTINGUISHING_ID, SM2_MSG).expect("sign");
    assert!(sig.len() <= gm::MAX_SIGNATURE_DER_LEN);
    gm::sm2_verify(
        &standard_public_key(),
        DEFAULT_DISTINGUISHING_ID,
        SM2_MSG,
        &sig,
    )
    .expect("verifies");
    assert_ne!(sig, standard_signature());
}
