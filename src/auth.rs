//! The web admin's password: a slow salted hash (PBKDF2-HMAC-SHA256, ring) in
//! the store's settings, and the one-time setup token used before a password
//! exists.
//!
//! Why: the admin page guards private keys and the PBX's identity; the
//! password must survive a stolen store file (salted, slow hash) and a
//! fresh appliance must not be open to the network before it is set.
//!
//! What must hold: the password is never stored, logged or echoed; checks run
//! in constant time (`ring::pbkdf2::verify`).

use std::num::NonZeroU32;

use base64ct::{Base64, Encoding};
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::Error;
use crate::limits::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, PBKDF2_ITERATIONS};
use crate::store::{Batch, Store};

const SETTING: &str = crate::settings::Setting::AdminPassword.name();
const SALT_LEN: usize = 16;

fn iterations(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// Random bytes as URL-safe Base64 (tokens, session IDs, CSRF tokens).
pub fn random_token(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::LimitExceeded("the system random generator failed".into()))?;
    Ok(base64ct::Base64UrlUnpadded::encode_string(&buf))
}

/// True once an admin password is set.
pub fn password_is_set(store: &Store) -> Result<bool, Error> {
    Ok(store.setting(SETTING)?.is_some())
}

/// Set (or replace) the admin password.
pub fn set_password(store: &Store, password: &str) -> Result<(), Error> {
    let len = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(Error::BadPassword(format!(
            "the password must have {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Error::LimitExceeded("the system random generator failed".into()))?;
    let mut hash = [0u8; ring::digest::SHA256_OUTPUT_LEN];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(PBKDF2_ITERATIONS),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    let record = format!(
        "pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}",
        Base64::encode_string(&salt),
        Base64::encode_string(&hash)
    );
    let mut batch = Batch::default();
    batch.put_setting(SETTING, record.as_bytes());
    store.commit(batch)?;
    Ok(())
}

/// Check a password against the stored hash (false when none is set).
pub fn check_password(store: &Store, password: &str) -> Result<bool, Error> {
    let Some(record) = store.setting(SETTING)? else {
        return Ok(false);
    };
    let record = String::from_utf8_lossy(&record);
    let mut parts = record.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Ok(false);
    };
    let (Ok(iter), Ok(salt), Ok(hash)) = (
        iter.parse::<u32>(),
        Base64::decode_vec(salt),
        Base64::decode_vec(hash),
    ) else {
        return Ok(false);
    };
    Ok(ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations(iter),
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::ops::open_store(dir.path()).unwrap();
        assert!(!password_is_set(&store).unwrap());
        assert!(!check_password(&store, "whatever-long").unwrap());
        assert_eq!(
            set_password(&store, "short").unwrap_err().code(),
            "bad-password"
        );
        set_password(&store, "correct horse battery").unwrap();
        assert!(password_is_set(&store).unwrap());
        assert!(check_password(&store, "correct horse battery").unwrap());
        assert!(!check_password(&store, "correct horse battery!").unwrap());
        let raw = String::from_utf8(store.setting(SETTING).unwrap().unwrap()).unwrap();
        assert!(!raw.contains("horse"));
    }

    #[test]
    fn tokens_are_random() {
        assert_ne!(random_token(16).unwrap(), random_token(16).unwrap());
        assert_eq!(random_token(16).unwrap().len(), 22);
    }
}
