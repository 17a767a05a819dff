//! SHA-256 content digests (`sha256:<64 hex>`), the only algorithm the store accepts, and readers
//! that hash what flows through them so content is verified while it streams.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::{ImageError, Result};

/// A SHA-256 digest. The hex part is validated (64 lowercase hex digits), so it is safe to use as
/// a file name in the store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// A digest from its 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Result<Digest> {
        if hex.len() != 64 {
            return Err(ImageError::InvalidDigest {
                digest: hex.to_string(),
                reason: format!("a sha256 digest has 64 hex digits, this one has {}", hex.len()),
            });
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ImageError::InvalidDigest {
                digest: hex.to_string(),
                reason: "a sha256 digest has only lowercase hex digits (0-9, a-f)".into(),
            });
        }
        Ok(Digest { hex: hex.to_string() })
    }

    /// The digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest { hex: format!("{:x}", hasher.finalize()) }
    }

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The same digest as oci-spec's type, for descriptors.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        let sha = oci_spec::image::Sha256Digest::from_str(&self.hex)
            .expect("a validated sha256 hex string is a valid oci-spec digest");
        sha.into()
    }

    /// Converts oci-spec's digest; other algorithms than sha256 are refused.
    pub fn from_oci(digest: &oci_spec::image::Digest) -> Result<Digest> {
        match digest.algorithm() {
            oci_spec::image::DigestAlgorithm::Sha256 => Digest::from_hex(digest.digest()),
            other => Err(ImageError::InvalidDigest {
                digest: digest.to_string(),
                reason: format!("only sha256 digests are supported, not {other}"),
            }),
        }
    }
}

impl FromStr for Digest {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Digest> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex).map_err(|e| match e {
                ImageError::InvalidDigest { reason, .. } => {
                    ImageError::InvalidDigest { digest: s.to_string(), reason }
                }
                other => other,
            }),
            Some((algorithm, _)) => Err(ImageError::InvalidDigest {
                digest: s.to_string(),
                reason: format!("only sha256 digests are supported, not {algorithm:?}"),
            }),
            None => Err(ImageError::InvalidDigest {
                digest: s.to_string(),
                reason: "expected sha256:<64 hex digits>".into(),
            }),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes everything read through it, and counts the bytes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the rest of the stream (so the digest covers all of it) and returns the digest and
    /// the total length.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_bytes_and_display() {
        let d = Digest::of(b"");
        assert_eq!(d.hex(), EMPTY);
        assert_eq!(d.to_string(), format!("sha256:{EMPTY}"));
        assert_eq!(d.to_oci().to_string(), d.to_string());
        assert_eq!(Digest::from_oci(&d.to_oci()).unwrap(), d);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let err = "sha256:abc".parse::<Digest>().unwrap_err().to_string();
        assert!(err.contains("64 hex digits") && err.contains("sha256:abc"), "{err}");
        let err = format!("sha256:{}", EMPTY.to_uppercase()).parse::<Digest>().unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let err = format!("sha512:{EMPTY}").parse::<Digest>().unwrap_err();
        assert!(err.to_string().contains("only sha256"), "{err}");
        let err = EMPTY.parse::<Digest>().unwrap_err();
        assert!(err.to_string().contains("expected sha256:"), "{err}");
    }

    #[test]
    fn hashing_reader_covers_unread_tail() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (d, len) = r.finish().unwrap();
        assert_eq!(len, 11);
        assert_eq!(d, Digest::of(b"hello world"));
    }
}
