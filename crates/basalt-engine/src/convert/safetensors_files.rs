//! The tensors of a Hugging Face model's `*.safetensors` files, read by offset: only the
//! headers are parsed up front, and each tensor's bytes are read when it is converted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConvertError;

/// safetensors' own limit on a header.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The element types a model's weights may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSource {
    pub file: PathBuf,
    pub dtype: Dtype,
    /// The Hugging Face shape (`[out, in]` for a matrix).
    pub shape: Vec<u64>,
    /// Absolute offset of the first byte in `file`.
    pub start: u64,
    pub len: u64,
}

impl TensorSource {
    pub fn read(&self) -> Result<Vec<u8>, ConvertError> {
        let io = |e: std::io::Error| ConvertError::Io(format!("{}: {e}", self.file.display()));
        let mut file = File::open(&self.file).map_err(io)?;
        file.seek(SeekFrom::Start(self.start)).map_err(io)?;
        let len = usize::try_from(self.len)
            .map_err(|_| ConvertError::Refused(format!("a tensor of {} bytes", self.len)))?;
        let mut bytes = vec![0u8; len];
        file.read_exact(&mut bytes).map_err(io)?;
        Ok(bytes)
    }
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Every tensor of `files` by name. A name in two files, a dtype other than
/// F32/F16/BF16, or offsets that do not fit the shape or the file are refused.
pub fn read_tensor_table(
    files: &[PathBuf],
) -> Result<BTreeMap<String, TensorSource>, ConvertError> {
    let mut table = BTreeMap::new();
    for path in files {
        for (name, source) in read_header(path)? {
            if table.insert(name.clone(), source).is_some() {
                return Err(ConvertError::Refused(format!(
                    "tensor {name} is in more than one safetensors file"
                )));
            }
        }
    }
    Ok(table)
}

fn read_header(path: &Path) -> Result<Vec<(String, TensorSource)>, ConvertError> {
    let shown = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let io = |e: std::io::Error| ConvertError::Io(format!("{shown}: {e}"));
    let refuse = |why: String| ConvertError::Refused(format!("{shown}: {why}"));
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| refuse("too short for a safetensors header".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || n + 8 > file_len {
        return Err(refuse(format!("header length {n} does not fit the file")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let header: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| refuse(format!("the header is not safetensors JSON: {e}")))?;
    let data_start = 8 + n;
    let data_len = file_len - data_start;
    let mut tensors = Vec::new();
    for (name, value) in header {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|e| refuse(format!("tensor {name}: {e}")))?;
        let dtype = match entry.dtype.as_str() {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::Bf16,
            other => {
                return Err(refuse(format!(
                    "tensor {name} is {other}; a model's weights must be F32, F16 or BF16 (quantized checkpoints are not converted)"
                )))
            }
        };
        let elements = entry
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| refuse(format!("tensor {name}: shape overflows")))?;
        let len = elements
            .checked_mul(dtype.bytes())
            .ok_or_else(|| refuse(format!("tensor {name}: shape overflows")))?;
        let [begin, end] = entry.data_offsets;
        if end < begin || end - begin != len || end > data_len {
            return Err(refuse(format!(
                "tensor {name}: offsets {begin}..{end} do not fit its shape {:?} ({len} bytes) or the file",
                entry.shape
            )));
        }
        tensors.push((
            name,
            TensorSource {
                file: path.to_path_buf(),
                dtype,
                shape: entry.shape,
                start: data_start + begin,
                len,
            },
        ));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(path: &Path, header: &str, data: &[u8]) {
        let mut f = File::create(path).expect("create");
        f.write_all(&(header.len() as u64).to_le_bytes())
            .expect("write");
        f.write_all(header.as_bytes()).expect("write");
        f.write_all(data).expect("write");
    }

    #[test]
    fn headers_are_read_and_bad_ones_refused() {
        let dir = std::env::temp_dir().join(format!("basalt-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("a.safetensors");
        write(
            &good,
            r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}"#,
            &[1, 2, 3, 4, 5, 6, 7, 8],
        );
        let table = read_tensor_table(std::slice::from_ref(&good)).expect("good file");
        let w = &table["w"];
        assert_eq!(
            (w.dtype, w.shape.clone(), w.len),
            (Dtype::F16, vec![2, 2], 8)
        );
        assert_eq!(w.read().expect("read"), vec![1, 2, 3, 4, 5, 6, 7, 8]);

        let cases = [
            (
                r#"{"w":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}"#,
                "must be F32",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#,
                "do not fit",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
                "do not fit",
            ),
            (
                r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}}"#,
                "overflows",
            ),
            (r#"not json"#, "not safetensors JSON"),
        ];
        for (i, (header, expect)) in cases.iter().enumerate() {
            let path = dir.join(format!("bad{i}.safetensors"));
            write(&path, header, &[0; 8]);
            let err = read_tensor_table(&[path]).expect_err(header).to_string();
            assert!(err.contains(expect), "{header}: {err}");
        }
        let huge = dir.join("huge.safetensors");
        std::fs::write(&huge, u64::MAX.to_le_bytes()).expect("write");
        assert!(
            read_tensor_table(&[huge]).is_err(),
            "a huge header length was accepted"
        );
        let twice = read_tensor_table(&[good.clone(), good]).expect_err("same tensor twice");
        assert!(twice.to_string().contains("more than one"), "{twice}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
