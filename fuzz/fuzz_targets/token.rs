//! Access tokens (`proto/src/token.rs`), as a relay receives them in SETUP or `?jwt=`:
//! arbitrary strings, and arbitrary claims correctly signed with the deployment's key (as
//! an issuer's bug, or a stolen key, would make); and key files' text. Verifying must
//! never panic; accepted claims must answer every question asked of them (expiry,
//! rights) without panicking, and re-issue to a token that verifies to the same claims.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use stagecast_proto::token::{path_has_prefix, TokenError, TokenKey};

const SECRET: &[u8; 32] = b"stagecast-fuzz-key-0123456789abc";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // A key file's text (`--auth-key-file`): base64 of at least 32 bytes, or an error.
    if let Ok(key) = TokenKey::from_text(&String::from_utf8_lossy(data)) {
        let _ = key.verify("a.b.c");
    }
    let key = TokenKey::new(SECRET.to_vec()).expect("32 bytes");
    let token = match mode % 3 {
        // Whatever a peer sends.
        0 => String::from_utf8_lossy(rest).into_owned(),
        // Any payload, signed: the claims parser and the expiry check see it all.
        1 => sign(
            &URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            rest,
        ),
        // Any header and payload, split at the first 0 byte, signed.
        _ => {
            let (header, payload) = stagecast_fuzz::split_once(rest, 0);
            sign(&URL_SAFE_NO_PAD.encode(header), payload)
        }
    };
    let Ok(claims) = key.verify(&token) else {
        return;
    };
    let _ = claims.expires_at();
    let paths = ["", "/", "live", "live/alice", "live//x", "é/ü"];
    for path in paths
        .iter()
        .copied()
        .chain(claims.publish.iter().map(String::as_str))
    {
        let _ = claims.may_publish(path);
        let _ = claims.may_subscribe(path);
        for prefix in &claims.subscribe {
            let _ = path_has_prefix(path, prefix);
        }
    }
    let again = key
        .issue(&claims)
        .expect("accepted claims can be issued again");
    match key.verify(&again) {
        Ok(back) => assert_eq!(back, claims),
        // The second ticked over between the two checks.
        Err(TokenError::Expired) => {}
        Err(err) => panic!("a re-issued token was refused: {err}"),
    }
});

/// `header.payload.signature`, HS256 over the first two with the fuzz key.
fn sign(header_b64: &str, payload: &[u8]) -> String {
    let signing_input = format!("{header_b64}.{}", URL_SAFE_NO_PAD.encode(payload));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}
