//! llama.cpp's own quantizer (`llama_model_quantize`, what `llama-quantize` runs), so an
//! imported model gets exactly the tensor types and block layouts llama.cpp's tools
//! would give it.
//!
//! The one `unsafe` block of this module is the FFI call (llama-cpp-2 does not wrap the
//! quantizer).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::Path;
use std::str::FromStr;

use llama_cpp_sys_2 as sys;

use super::ConvertError;

/// The file types a converted model can be quantized to (llama.cpp's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    F32,
    F16,
    Bf16,
    Q8_0,
    Q6K,
    Q5KM,
    Q5KS,
    Q5_1,
    Q5_0,
    Q4KM,
    Q4KS,
    Q4_1,
    Q4_0,
    Q3KM,
    Q2K,
}

const NAMES: [(&str, QuantType); 15] = [
    ("F32", QuantType::F32),
    ("F16", QuantType::F16),
    ("BF16", QuantType::Bf16),
    ("Q8_0", QuantType::Q8_0),
    ("Q6_K", QuantType::Q6K),
    ("Q5_K_M", QuantType::Q5KM),
    ("Q5_K_S", QuantType::Q5KS),
    ("Q5_1", QuantType::Q5_1),
    ("Q5_0", QuantType::Q5_0),
    ("Q4_K_M", QuantType::Q4KM),
    ("Q4_K_S", QuantType::Q4KS),
    ("Q4_1", QuantType::Q4_1),
    ("Q4_0", QuantType::Q4_0),
    ("Q3_K_M", QuantType::Q3KM),
    ("Q2_K", QuantType::Q2K),
];

impl QuantType {
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// Every name accepted, for messages.
    pub fn names() -> Vec<&'static str> {
        NAMES.iter().map(|(n, _)| *n).collect()
    }

    fn ftype(self) -> sys::llama_ftype {
        match self {
            Self::F32 => sys::LLAMA_FTYPE_ALL_F32,
            Self::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
            Self::Bf16 => sys::LLAMA_FTYPE_MOSTLY_BF16,
            Self::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            Self::Q6K => sys::LLAMA_FTYPE_MOSTLY_Q6_K,
            Self::Q5KM => sys::LLAMA_FTYPE_MOSTLY_Q5_K_M,
            Self::Q5KS => sys::LLAMA_FTYPE_MOSTLY_Q5_K_S,
            Self::Q5_1 => sys::LLAMA_FTYPE_MOSTLY_Q5_1,
            Self::Q5_0 => sys::LLAMA_FTYPE_MOSTLY_Q5_0,
            Self::Q4KM => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
            Self::Q4KS => sys::LLAMA_FTYPE_MOSTLY_Q4_K_S,
            Self::Q4_1 => sys::LLAMA_FTYPE_MOSTLY_Q4_1,
            Self::Q4_0 => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
            Self::Q3KM => sys::LLAMA_FTYPE_MOSTLY_Q3_K_M,
            Self::Q2K => sys::LLAMA_FTYPE_MOSTLY_Q2_K,
        }
    }
}

impl FromStr for QuantType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                format!(
                    "quantization {s:?} is not one of {}",
                    QuantType::names().join(", ")
                )
            })
    }
}

/// Quantizes the GGUF model at `input` to `to`, written to `output`, on `threads` threads
/// (0: llama.cpp's choice). Quantized tensors of the source are dequantized first, so
/// `F32` makes a full-precision copy of a quantized model.
pub fn quantize(
    input: &Path,
    output: &Path,
    to: QuantType,
    threads: usize,
) -> Result<(), ConvertError> {
    crate::backend().map_err(|e| ConvertError::Quantize(e.to_string()))?;
    let path = |p: &Path| {
        CString::new(p.to_string_lossy().as_bytes())
            .map_err(|_| ConvertError::Io(format!("{} has a NUL byte", p.display())))
    };
    let (input_c, output_c) = (path(input)?, path(output)?);
    // SAFETY: the default parameters are plain values and null pointers; the two paths
    // are NUL-terminated strings alive for the call; llama_model_quantize reads and
    // writes only those files.
    let status = unsafe {
        let mut params = sys::llama_model_quantize_default_params();
        params.nthread = i32::try_from(threads).unwrap_or(0);
        params.ftype = to.ftype();
        // A quantized source is dequantized first (an F32 copy of a served model).
        params.allow_requantize = true;
        sys::llama_model_quantize(input_c.as_ptr(), output_c.as_ptr(), &params)
    };
    if status != 0 {
        let _ = std::fs::remove_file(output);
        return Err(ConvertError::Quantize(format!(
            "llama_model_quantize to {} returned {status}",
            to.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        for name in QuantType::names() {
            let parsed: QuantType = name.parse().expect(name);
            assert_eq!(parsed.name(), name);
        }
        assert_eq!("q4_k_m".parse::<QuantType>(), Ok(QuantType::Q4KM));
        let err = "Q9".parse::<QuantType>().expect_err("Q9");
        assert!(err.contains("Q8_0"), "{err}");
    }
}
