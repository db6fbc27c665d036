//! Cookie values at rest. With `[state] encryption_key`, each cookie in a state file is sealed
//! with AES-256-GCM; names and session metadata stay readable for operators.
//!
//! Every write of a file draws a fresh random salt, and the file's key is HKDF-SHA256 of the
//! configured secret under that salt. Each value then gets its own random 96-bit nonce. A file
//! is rewritten often, and a new key per write keeps the number of random nonces under any
//! one key to the cookies of one file, far from where GCM's random-nonce bound matters.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use super::key::{KeyHasher, HASH_KEY_LEN};
use crate::config::Secret;

/// Names the scheme in the file, so that a later format can tell its files apart.
pub(crate) const SCHEME: &str = "AES-256-GCM/HKDF-SHA256";

const SALT_LEN: usize = 16;

/// The HKDF `info`: binds derived keys to this one use of the secret.
const INFO: &[u8] = b"provproxy state file cookie values v1";

/// The HKDF `info` of the session-key hash secret derived from the state key.
const HASHER_INFO: &[u8] = b"provproxy shared session key hashes v1";

/// The configured state secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct StateCipher {
    secret: Secret,
    random: SystemRandom,
}

impl std::fmt::Debug for StateCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateCipher({:?})", self.secret)
    }
}

/// The key of one file version, and the salt it was derived with (stored in the file).
pub(crate) struct FileKey {
    pub(crate) salt: String,
    key: LessSafeKey,
    random: SystemRandom,
}

impl StateCipher {
    pub fn new(secret: Secret) -> StateCipher {
        StateCipher {
            secret,
            random: SystemRandom::new(),
        }
    }

    /// A key for writing a new version of a file, under a fresh random salt.
    pub(crate) fn new_file_key(&self) -> Result<FileKey, ring::error::Unspecified> {
        let mut salt = [0u8; SALT_LEN];
        self.random.fill(&mut salt)?;
        self.derive(&salt, STANDARD.encode(salt))
    }

    /// The key a file was written with, from the salt stored in it; `None` when the salt is
    /// not valid base64.
    pub(crate) fn file_key(&self, salt: &str) -> Option<FileKey> {
        let bytes = STANDARD.decode(salt).ok()?;
        self.derive(&bytes, salt.to_owned()).ok()
    }

    /// The secret that keys session-key hashes when sessions are shared by several replicas:
    /// they all derive the same one from the state key, under an `info` of its own.
    pub(crate) fn key_hasher(&self) -> Result<KeyHasher, ring::error::Unspecified> {
        let mut secret = [0u8; HASH_KEY_LEN];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(self.secret.expose().as_bytes())
            .expand(&[HASHER_INFO], hkdf::HKDF_SHA256)?
            .fill(&mut secret)?;
        Ok(KeyHasher::new(&secret))
    }

    /// `base64(nonce || ciphertext || tag)` of `plaintext` under a fresh key, with that key's
    /// salt: a value kept on its own (a shared token) rather than in a document.
    pub(crate) fn seal_value(
        &self,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<(String, String), ring::error::Unspecified> {
        let key = self.new_file_key()?;
        let sealed = key.seal(context, plaintext)?;
        Ok((key.salt, sealed))
    }

    /// The plaintext of [`StateCipher::seal_value`]'s output; `None` for a wrong key or an
    /// altered value.
    pub(crate) fn open_value(&self, context: &[u8], salt: &str, sealed: &str) -> Option<Vec<u8>> {
        self.file_key(salt)?.open(context, sealed)
    }

    fn derive(&self, salt: &[u8], encoded: String) -> Result<FileKey, ring::error::Unspecified> {
        let key = hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
            .extract(self.secret.expose().as_bytes())
            .expand(&[INFO], &aead::AES_256_GCM)
            .map(aead::UnboundKey::from)?;
        Ok(FileKey {
            salt: encoded,
            key: LessSafeKey::new(key),
            random: self.random.clone(),
        })
    }
}

impl FileKey {
    /// `base64(nonce || ciphertext || tag)` of `plaintext`, bound to `context` (which is stored
    /// next to it in clear: moving a sealed value to another cookie or session breaks it).
    pub(crate) fn seal(
        &self,
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<String, ring::error::Unspecified> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + aead::MAX_TAG_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let mut in_out = sealed.split_off(NONCE_LEN);
        self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut in_out,
        )?;
        sealed.extend_from_slice(&in_out);
        Ok(STANDARD.encode(sealed))
    }

    /// The plaintext of a sealed value; `None` for a wrong key, a value altered or moved, or
    /// text that is not a sealed value at all (they cannot be told apart, by design).
    pub(crate) fn open(&self, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    fn cipher(secret: &str) -> StateCipher {
        StateCipher::new(Secret::new(secret, SecretSource::Env("KEY".into())))
    }

    #[test]
    fn a_sealed_value_opens_with_the_same_secret_and_salt_only() {
        let right = cipher("0123456789abcdef0123456789abcdef");
        let written = right.new_file_key().unwrap();
        let sealed = written
            .seal(b"osmc\0route\0JSESSIONID", b"value-42")
            .unwrap();
        assert!(!sealed.contains("value-42"));

        let reread = right.file_key(&written.salt).unwrap();
        assert_eq!(
            reread.open(b"osmc\0route\0JSESSIONID", &sealed).as_deref(),
            Some(&b"value-42"[..])
        );
        assert_eq!(reread.open(b"osmc\0route\0other", &sealed), None, "moved");
        let wrong = cipher("fedcba9876543210fedcba9876543210");
        let wrong_key = wrong.file_key(&written.salt).unwrap();
        assert_eq!(wrong_key.open(b"osmc\0route\0JSESSIONID", &sealed), None);
        assert_eq!(reread.open(b"osmc\0route\0JSESSIONID", "not sealed"), None);
    }

    #[test]
    fn every_value_and_every_file_version_gets_its_own_nonce_and_key() {
        let cipher = cipher("0123456789abcdef0123456789abcdef");
        let first = cipher.new_file_key().unwrap();
        let a = first.seal(b"c", b"same").unwrap();
        let b = first.seal(b"c", b"same").unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        let second = cipher.new_file_key().unwrap();
        assert_ne!(first.salt, second.salt, "a fresh salt per file version");
        assert_eq!(second.open(b"c", &a), None, "another version's key");
        assert!(!format!("{cipher:?}").contains("0123456789abcdef"));
    }
}
