//! A streaming GGUF (version 3) writer: the header, the metadata and the tensor table
//! are written first, then each tensor's bytes as they are produced, so a model larger
//! than memory converts one tensor at a time.

use std::io::{self, Write};

/// GGUF's data alignment (`general.alignment` is not written, so readers use this).
pub const ALIGNMENT: u64 = 32;

const MAGIC: u32 = 0x4655_4747; // "GGUF", little-endian
const VERSION: u32 = 3;

/// ggml tensor types a converted model's tensors take before quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    Bf16,
}

impl TensorType {
    /// ggml's type number.
    fn ggml_id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Bf16 => 30,
        }
    }

    pub fn element_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U32(u32),
    F32(f32),
    Bool(bool),
    Text(String),
    TextArray(Vec<String>),
    I32Array(Vec<i32>),
    F32Array(Vec<f32>),
}

/// One tensor of the table: its GGUF name, its dimensions in ggml's order (fastest
/// first: a Hugging Face `[out, in]` matrix is `[in, out]` here) and its type.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dims: Vec<u64>,
    pub kind: TensorType,
}

impl TensorEntry {
    pub fn byte_len(&self) -> u64 {
        self.dims.iter().product::<u64>() * self.kind.element_bytes()
    }
}

fn padding(offset: u64) -> u64 {
    (ALIGNMENT - offset % ALIGNMENT) % ALIGNMENT
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Counting<W> {
    fn bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn text(&mut self, s: &str) -> io::Result<()> {
        self.u64(s.len() as u64)?;
        self.bytes(s.as_bytes())
    }

    fn zeros(&mut self, n: u64) -> io::Result<()> {
        const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];
        // n < ALIGNMENT: only ever used for padding.
        self.bytes(&ZEROS[..n as usize])
    }

    fn value(&mut self, value: &MetaValue) -> io::Result<()> {
        // GGUF value types: 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array.
        match value {
            MetaValue::U32(v) => {
                self.u32(4)?;
                self.u32(*v)
            }
            MetaValue::F32(v) => {
                self.u32(6)?;
                self.bytes(&v.to_le_bytes())
            }
            MetaValue::Bool(v) => {
                self.u32(7)?;
                self.bytes(&[u8::from(*v)])
            }
            MetaValue::Text(s) => {
                self.u32(8)?;
                self.text(s)
            }
            MetaValue::TextArray(items) => {
                self.u32(9)?;
                self.u32(8)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|s| self.text(s))
            }
            MetaValue::I32Array(items) => {
                self.u32(9)?;
                self.u32(5)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|v| self.bytes(&v.to_le_bytes()))
            }
            MetaValue::F32Array(items) => {
                self.u32(9)?;
                self.u32(6)?;
                self.u64(items.len() as u64)?;
                items.iter().try_for_each(|v| self.bytes(&v.to_le_bytes()))
            }
        }
    }
}

/// Writes a GGUF file: `metadata`, the table of `tensors`, then each tensor's data
/// from `data(index, sink)`, which must write exactly that tensor's
/// [`TensorEntry::byte_len`] bytes (checked).
pub fn write_gguf<W: Write>(
    out: W,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorEntry],
    mut data: impl FnMut(usize, &mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut w = Counting {
        inner: out,
        written: 0,
    };
    w.u32(MAGIC)?;
    w.u32(VERSION)?;
    w.u64(tensors.len() as u64)?;
    w.u64(metadata.len() as u64)?;
    for (key, value) in metadata {
        w.text(key)?;
        w.value(value)?;
    }
    let mut offset = 0u64;
    for tensor in tensors {
        w.text(&tensor.name)?;
        w.u32(tensor.dims.len() as u32)?;
        for d in &tensor.dims {
            w.u64(*d)?;
        }
        w.u32(tensor.kind.ggml_id())?;
        w.u64(offset)?;
        offset += tensor.byte_len();
        offset += padding(offset);
    }
    let pad = padding(w.written);
    w.zeros(pad)?;
    for (index, tensor) in tensors.iter().enumerate() {
        let before = w.written;
        let mut sink = Sink { w: &mut w };
        data(index, &mut sink)?;
        let wrote = w.written - before;
        if wrote != tensor.byte_len() {
            return Err(io::Error::other(format!(
                "tensor {} wrote {wrote} bytes, its shape needs {}",
                tensor.name,
                tensor.byte_len()
            )));
        }
        let pad = padding(w.written);
        w.zeros(pad)?;
    }
    w.inner.flush()
}

struct Sink<'a, W: Write> {
    w: &'a mut Counting<W>,
}

impl<W: Write> Write for Sink<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.bytes(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_has_the_layout_gguf_readers_expect() -> io::Result<()> {
        let tensors = vec![
            TensorEntry {
                name: "a".into(),
                dims: vec![3],
                kind: TensorType::F32,
            },
            TensorEntry {
                name: "b".into(),
                dims: vec![2, 3],
                kind: TensorType::F16,
            },
        ];
        let metadata = vec![
            (
                "general.architecture".to_owned(),
                MetaValue::Text("llama".into()),
            ),
            ("x.list".to_owned(), MetaValue::I32Array(vec![1, -2])),
        ];
        let mut bytes = Vec::new();
        write_gguf(&mut bytes, &metadata, &tensors, |i, sink| {
            let n = tensors[i].byte_len() as usize;
            sink.write_all(&vec![i as u8 + 1; n])
        })?;
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(
            u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            3
        );
        // The data section starts aligned; tensor b starts at the next aligned offset.
        // Each tensor is padded to the alignment, the last one too.
        let data_start = bytes.len() - 64;
        assert_eq!(data_start % 32, 0, "data section is not aligned");
        assert_eq!(&bytes[data_start..data_start + 12], &[1u8; 12]);
        assert_eq!(&bytes[data_start + 12..data_start + 32], &[0u8; 20]);
        assert_eq!(&bytes[data_start + 32..data_start + 44], &[2u8; 12]);
        assert_eq!(&bytes[data_start + 44..], &[0u8; 20]);
        // A short tensor is an error, not a corrupt file.
        let short = write_gguf(Vec::new(), &metadata, &tensors, |_, sink| {
            sink.write_all(&[0])
        });
        assert!(
            short.is_err(),
            "a tensor shorter than its shape was accepted"
        );
        Ok(())
    }
}
