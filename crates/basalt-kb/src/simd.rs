//! The int8 dot product of the vector scans, with an AVX-512 VNNI kernel where the
//! CPU has one (checked at run time, once per query) and the portable loop — which
//! the compiler vectorises — elsewhere.
//!
//! VNNI's `vpdpbusd` multiplies unsigned by signed bytes, so a row's codes are read
//! with their sign bit flipped (`x + 128`, as unsigned) and the query's codes stay
//! signed: the kernel sums `(x + 128)·q`, which is the wanted `x·q` plus `128·Σq`, a
//! constant of the query that [`QueryCodes`] subtracts.
#![allow(unsafe_code)]

/// Asks the CPU to start loading `row` into its caches (a hint: no effect on results,
/// nothing where the architecture has no prefetch instruction). A scan that reads
/// scattered rows — a filter's admitted ones — issues it a few rows ahead, so their
/// memory latency overlaps instead of adding up.
#[inline]
pub(crate) fn prefetch(row: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(64) {
        // SAFETY: a prefetch never faults and reads nothing into the program; the
        // pointer is inside a live slice (SSE is part of x86_64's baseline).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// A query's int8 codes, ready for many dot products.
pub(crate) struct QueryCodes {
    codes: Vec<i8>,
    /// `128·Σq` over the part of the vector the wide kernel covers.
    bias: i32,
    vnni: bool,
}

const LANES: usize = 64;

impl QueryCodes {
    pub(crate) fn new(codes: Vec<i8>) -> Self {
        let wide = codes.len() / LANES * LANES;
        let bias = 128 * codes[..wide].iter().map(|q| i32::from(*q)).sum::<i32>();
        Self {
            codes,
            bias,
            vnni: vnni_available(),
        }
    }

    /// `Σ qᵢ·rowᵢ` (the row as long as the query).
    #[inline]
    pub(crate) fn dot(&self, row: &[i8]) -> i32 {
        #[cfg(target_arch = "x86_64")]
        if self.vnni && row.len() == self.codes.len() {
            // SAFETY: `vnni` is true only when the CPU reports AVX-512 F, BW and VNNI
            // (`vnni_available`), which is what the kernel's target features require;
            // the lengths are equal, and the kernel reads only inside both slices.
            return unsafe { x86::dot_vnni(&self.codes, row) } - self.bias;
        }
        portable_dot(&self.codes, row)
    }
}

fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Integer dot product in 16 lanes of i32 (vectorised by the compiler).
pub(crate) fn portable_dot(a: &[i8], b: &[i8]) -> i32 {
    let mut lanes = [0i32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let tail: i32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            lanes[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    lanes.iter().sum::<i32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m512i, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_reduce_add_epi32,
        _mm512_set1_epi8, _mm512_setzero_si512, _mm512_xor_si512,
    };

    use super::LANES;

    /// `Σ (rowᵢ + 128)·qᵢ` over the first `len / 64 · 64` bytes, plus the exact
    /// `Σ rowᵢ·qᵢ` of the rest.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI, and `query.len() == row.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn dot_vnni(query: &[i8], row: &[i8]) -> i32 {
        let blocks = query.len() / LANES;
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc = _mm512_setzero_si512();
        for b in 0..blocks {
            // SAFETY: block `b` lies inside both slices (b < len / 64), and the
            // loads are unaligned ones.
            let (q, r) = unsafe {
                (
                    _mm512_loadu_si512(query.as_ptr().add(b * LANES).cast::<__m512i>()),
                    _mm512_loadu_si512(row.as_ptr().add(b * LANES).cast::<__m512i>()),
                )
            };
            acc = _mm512_dpbusd_epi32(acc, _mm512_xor_si512(r, flip), q);
        }
        let tail = super::portable_dot(&query[blocks * LANES..], &row[blocks * LANES..]);
        _mm512_reduce_add_epi32(acc) + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_in_use_matches_the_portable_dot_product() {
        for len in [3usize, 64, 100, 384, 768] {
            let q: Vec<i8> = (0..len)
                .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
                .collect();
            let r: Vec<i8> = (0..len)
                .map(|i| ((i * 91 % 255) as i32 - 127) as i8)
                .collect();
            let extremes = vec![i8::MIN + 1; len];
            let codes = QueryCodes::new(q.clone());
            assert_eq!(codes.dot(&r), portable_dot(&q, &r), "length {len}");
            assert_eq!(
                codes.dot(&extremes),
                portable_dot(&q, &extremes),
                "length {len}"
            );
        }
    }
}
