//! SentencePiece's `tokenizer.model` (a `ModelProto` protobuf), read for what llama.cpp's
//! SentencePiece tokenizer needs: each piece with its score and type, whether the model
//! was trained as BPE, and whether a space is put before the text (`add_dummy_prefix`).
//! Only the fields used are decoded; the others are skipped by their wire type.

use super::ConvertError;

/// Largest `tokenizer.model` read (real ones are a few MiB).
pub const MAX_MODEL_BYTES: u64 = 64 << 20;
const MAX_PIECES: usize = 1 << 20;

/// A piece's type, numbered as SentencePiece and llama.cpp both number them.
pub const NORMAL: i32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub text: String,
    pub score: f32,
    pub kind: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SentencePieceModel {
    pub pieces: Vec<Piece>,
    /// `trainer_spec.model_type == BPE` (llama.cpp's SentencePiece tokenizer merges by
    /// score, which is what a BPE-trained model means; Unigram models are not read).
    pub bpe: bool,
    pub add_dummy_prefix: bool,
}

fn refuse(why: &str) -> ConvertError {
    ConvertError::Refused(format!("tokenizer.model: {why}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32([u8; 4]),
    Other,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, ConvertError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| refuse("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(refuse("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ConvertError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| refuse("a field runs past the end of the file"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field: its number and value; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, ConvertError> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Other
            }
            2 => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| refuse("a field length overflows"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32([b[0], b[1], b[2], b[3]])
            }
            other => return Err(refuse(&format!("wire type {other} is not protobuf's"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

/// Decodes a `tokenizer.model`.
pub fn parse(bytes: &[u8]) -> Result<SentencePieceModel, ConvertError> {
    let mut model = SentencePieceModel {
        pieces: Vec::new(),
        bpe: false,
        add_dummy_prefix: true,
    };
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, Field::Bytes(piece)) => {
                if model.pieces.len() >= MAX_PIECES {
                    return Err(refuse(&format!("more than {MAX_PIECES} pieces")));
                }
                model.pieces.push(parse_piece(piece)?);
            }
            // trainer_spec: model_type is field 3 (UNIGRAM 1, BPE 2, WORD 3, CHAR 4).
            (2, Field::Bytes(spec)) => {
                let mut inner = Reader::new(spec);
                while let Some((n, v)) = inner.field()? {
                    if let (3, Field::Varint(kind)) = (n, v) {
                        model.bpe = kind == 2;
                    }
                }
            }
            // normalizer_spec: add_dummy_prefix is field 3.
            (3, Field::Bytes(spec)) => {
                let mut inner = Reader::new(spec);
                while let Some((n, v)) = inner.field()? {
                    if let (3, Field::Varint(flag)) = (n, v) {
                        model.add_dummy_prefix = flag != 0;
                    }
                }
            }
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err(refuse("holds no pieces (is it a SentencePiece model?)"));
    }
    Ok(model)
}

fn parse_piece(bytes: &[u8]) -> Result<Piece, ConvertError> {
    let mut piece = Piece {
        text: String::new(),
        score: 0.0,
        kind: NORMAL,
    };
    let mut reader = Reader::new(bytes);
    while let Some((number, value)) = reader.field()? {
        match (number, value) {
            (1, Field::Bytes(text)) => {
                piece.text =
                    String::from_utf8(text.to_vec()).map_err(|_| refuse("a piece is not UTF-8"))?;
            }
            (2, Field::Fixed32(score)) => piece.score = f32::from_le_bytes(score),
            (3, Field::Varint(kind)) => {
                piece.kind = match kind {
                    1..=6 => kind as i32,
                    other => {
                        return Err(refuse(&format!(
                            "piece type {other} is not SentencePiece's"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(piece)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, body: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    /// A `ModelProto` of `pieces` (text, score, type), BPE (`model_type` 2) or not, with
    /// `add_dummy_prefix`.
    pub(crate) fn model_proto(
        pieces: &[(&str, f32, i32)],
        model_type: u64,
        add_dummy_prefix: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for (text, score, kind) in pieces {
            let mut piece = Vec::new();
            bytes_field(1, text.as_bytes(), &mut piece);
            varint(2 << 3 | 5, &mut piece);
            piece.extend_from_slice(&score.to_le_bytes());
            varint(3 << 3, &mut piece);
            varint(*kind as u64, &mut piece);
            bytes_field(1, &piece, &mut out);
        }
        let mut trainer = Vec::new();
        varint(3 << 3, &mut trainer);
        varint(model_type, &mut trainer);
        bytes_field(2, &trainer, &mut out);
        let mut normalizer = Vec::new();
        bytes_field(1, b"identity", &mut normalizer);
        varint(3 << 3, &mut normalizer);
        varint(u64::from(add_dummy_prefix), &mut normalizer);
        bytes_field(3, &normalizer, &mut out);
        out
    }

    #[test]
    fn a_model_proto_is_read() -> Result<(), ConvertError> {
        let proto = model_proto(
            &[
                ("<unk>", 0.0, 2),
                ("<s>", 0.0, 3),
                ("<0x0A>", 0.0, 6),
                ("\u{2581}the", -3.5, 1),
            ],
            2,
            false,
        );
        let model = parse(&proto)?;
        assert!(model.bpe && !model.add_dummy_prefix);
        assert_eq!(model.pieces.len(), 4);
        assert_eq!(
            model.pieces[3],
            Piece {
                text: "\u{2581}the".into(),
                score: -3.5,
                kind: 1
            }
        );
        assert_eq!(model.pieces[2].kind, 6);
        Ok(())
    }

    #[test]
    fn damaged_protos_are_refused() {
        let proto = model_proto(&[("<unk>", 0.0, 2), ("a", -1.0, 1)], 2, true);
        for cut in [1, 5, proto.len() - 3] {
            assert!(
                parse(&proto[..cut]).is_err(),
                "a proto cut at {cut} was read"
            );
        }
        assert!(parse(&[]).is_err(), "an empty file was read");
        assert!(parse(&[0xff; 12]).is_err(), "an endless varint was read");
        let bad_kind = model_proto(&[("a", 0.0, 9)], 2, true);
        assert!(parse(&bad_kind).is_err(), "piece type 9 was read");
    }
}
