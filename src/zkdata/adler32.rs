//! Adler-32 (RFC 1950), the checksum `java.util.zip.Adler32` computes and ZooKeeper stores as a
//! jute `long` (the 32-bit value zero-extended) in its transaction logs and snapshots.

const MOD: u32 = 65_521;
/// Largest number of bytes that can be summed before `b` could overflow a `u32`.
const NMAX: usize = 5_552;

/// A running Adler-32 checksum.
#[derive(Debug, Clone, Copy)]
pub struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Adler32 {
    pub fn new() -> Self {
        Adler32 { a: 1, b: 0 }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(NMAX) {
            for &byte in chunk {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= MOD;
            self.b %= MOD;
        }
    }

    pub fn value(&self) -> u32 {
        (self.b << 16) | self.a
    }
}

/// The Adler-32 of `bytes`.
pub fn adler32(bytes: &[u8]) -> u32 {
    let mut sum = Adler32::new();
    sum.update(bytes);
    sum.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"a"), 0x0062_0062);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Long input exercises the deferred modulo.
        let big = vec![0xffu8; 100_000];
        let mut split = Adler32::new();
        split.update(&big[..12_345]);
        split.update(&big[12_345..]);
        assert_eq!(split.value(), adler32(&big));
        // Reference value computed bytewise with the modulo applied on every step.
        let (mut a, mut b) = (1u32, 0u32);
        for &x in &big {
            a = (a + u32::from(x)) % MOD;
            b = (b + a) % MOD;
        }
        assert_eq!(adler32(&big), (b << 16) | a);
    }
}
