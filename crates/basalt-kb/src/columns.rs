//! Metadata as dictionary-encoded columns: per attribute, each distinct value is kept
//! once and every slot holds a 4-byte code. A filter leaf is resolved once per query
//! into a table of which codes pass (evaluated on the distinct values, with the same
//! [`Filter::leaf_matches`] the JSON path uses, so the answers are the same by
//! construction); testing a slot is then two array reads, whatever the value's type.
//! `equals` / `notEquals` / `in` / `notIn` find their codes through the dictionary's
//! index, so a column with a value per document (a source URI) costs them no scan of
//! its values.

use std::collections::HashMap;

use serde_json::Value;

use crate::filter::Filter;

/// The code of a slot without the attribute.
const MISSING: u32 = u32::MAX;

/// The dictionary key of a value: numbers by their f64 (so 5 and 5.0, which filters
/// treat as the same, share a code), anything else by its JSON text.
fn key_of(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if value.is_number() => format!("n:{n}"),
        _ => value.to_string(),
    }
}

/// One attribute's values by slot.
#[derive(Debug, Default, Clone)]
pub(crate) struct Column {
    /// Distinct values, by code.
    values: Vec<Value>,
    index: HashMap<String, u32>,
    /// By slot; shorter than the slots where later rows lack the attribute.
    codes: Vec<u32>,
}

impl Column {
    /// Sets `slot`'s value (slots are set in increasing order).
    pub(crate) fn set(&mut self, slot: usize, value: &Value) {
        let key = key_of(value);
        let code = match self.index.get(&key) {
            Some(c) => *c,
            None => {
                let c = self.values.len() as u32;
                self.values.push(value.clone());
                self.index.insert(key, c);
                c
            }
        };
        if self.codes.len() <= slot {
            self.codes.resize(slot + 1, MISSING);
        }
        self.codes[slot] = code;
    }

    /// Clears `slot`'s value.
    pub(crate) fn clear(&mut self, slot: usize) {
        if let Some(c) = self.codes.get_mut(slot) {
            *c = MISSING;
        }
    }

    /// The column after a compaction that keeps the slots `kept` (old slot numbers,
    /// in their new order), with only the values still used; `None` if none is.
    pub(crate) fn kept(&self, kept: &[usize]) -> Option<Column> {
        let mut out = Column::default();
        for (new, old) in kept.iter().enumerate() {
            if let Some(&code) = self.codes.get(*old).filter(|c| **c != MISSING) {
                out.set(new, &self.values[code as usize]);
            }
        }
        (!out.values.is_empty()).then_some(out)
    }

    /// Which codes a leaf passes, and whether a slot without the attribute does.
    pub(crate) fn resolve(&self, leaf: &Filter) -> ResolvedLeaf<'_> {
        let missing = leaf.leaf_matches(None);
        let codes = |values: &[Value], pass: bool| -> Vec<bool> {
            let mut table = vec![!pass; self.values.len()];
            for v in values {
                if let Some(&c) = self.index.get(&key_of(v)) {
                    table[c as usize] = pass;
                }
            }
            table
        };
        let table = match leaf {
            Filter::Equals(_, v) => codes(std::slice::from_ref(v), true),
            Filter::NotEquals(_, v) => codes(std::slice::from_ref(v), false),
            Filter::In(_, list) => codes(list, true),
            Filter::NotIn(_, list) => codes(list, false),
            other => self
                .values
                .iter()
                .map(|v| other.leaf_matches(Some(v)))
                .collect(),
        };
        ResolvedLeaf {
            table,
            missing,
            codes: &self.codes,
        }
    }
}

/// A leaf resolved against a column: a slot passes if its code's entry does.
pub(crate) struct ResolvedLeaf<'a> {
    table: Vec<bool>,
    missing: bool,
    codes: &'a [u32],
}

impl ResolvedLeaf<'_> {
    /// A leaf on an attribute no slot has.
    pub(crate) fn absent(leaf: &Filter) -> ResolvedLeaf<'static> {
        ResolvedLeaf {
            table: Vec::new(),
            missing: leaf.leaf_matches(None),
            codes: &[],
        }
    }

    #[inline]
    pub(crate) fn matches(&self, slot: usize) -> bool {
        match self.codes.get(slot) {
            Some(&c) if c != MISSING => self.table[c as usize],
            _ => self.missing,
        }
    }

    /// The slots `0..n` that pass, as a bitset: one sequential pass over the codes,
    /// 64 at a time, without branches (a missing value reads the table's last entry).
    pub(crate) fn bits(&self, n: usize) -> Vec<u64> {
        let mut table: Vec<u64> = self.table.iter().map(|&p| u64::from(p)).collect();
        table.push(u64::from(self.missing));
        let last = self.table.len() as u32;
        let codes = &self.codes[..self.codes.len().min(n)];
        let mut bits = Vec::with_capacity(n.div_ceil(64));
        for chunk in codes.chunks(64) {
            let mut word = 0u64;
            for (b, &code) in chunk.iter().enumerate() {
                word |= table[code.min(last) as usize] << b;
            }
            bits.push(word);
        }
        // Slots past the column's end lack the attribute.
        let tail = codes.len() % 64;
        if tail != 0 && self.missing {
            if let Some(w) = bits.last_mut() {
                *w |= u64::MAX << tail;
            }
        }
        bits.resize(n.div_ceil(64), if self.missing { u64::MAX } else { 0 });
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Metadata;
    use serde_json::json;

    /// A small deterministic generator (no dependency for a test).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() as usize) % items.len()]
        }
    }

    fn random_value(rng: &mut Lcg) -> Value {
        match rng.next() % 7 {
            0 => json!(rng.next() % 5),
            1 => json!((rng.next() % 5) as f64 + 0.5),
            2 => json!(*rng.pick(&["red", "green", "blue", "greenish", ""])),
            3 => json!(rng.next() % 2 == 0),
            4 => json!([*rng.pick(&["red", "blue"]), *rng.pick(&["green", "x"])]),
            5 => json!(rng.next() % 5 == 0),
            _ => json!(format!("doc-{}", rng.next() % 50)),
        }
    }

    fn random_leaf(rng: &mut Lcg) -> Value {
        let key = *rng.pick(&["a", "b", "c", "absent"]);
        let value = random_value(rng);
        let scalar = if value.is_array() {
            json!("green")
        } else {
            value
        };
        let number = json!((rng.next() % 6) as f64 * 0.75);
        match rng.next() % 11 {
            0 => json!({"equals": {"key": key, "value": scalar}}),
            1 => json!({"notEquals": {"key": key, "value": scalar}}),
            2 => json!({"greaterThan": {"key": key, "value": number}}),
            3 => json!({"greaterThanOrEquals": {"key": key, "value": number}}),
            4 => json!({"lessThan": {"key": key, "value": number}}),
            5 => json!({"lessThanOrEquals": {"key": key, "value": number}}),
            6 => json!({"in": {"key": key, "value": [scalar, json!(3), json!("blue")]}}),
            7 => json!({"notIn": {"key": key, "value": [scalar, json!("red")]}}),
            8 => json!({"startsWith": {"key": key, "value": *rng.pick(&["gr", "doc-1", "b"])}}),
            9 => json!({"listContains": {"key": key, "value": *rng.pick(&["red", "green", "x"])}}),
            _ => json!({"stringContains": {"key": key, "value": *rng.pick(&["ee", "doc", "u"])}}),
        }
    }

    fn random_filter(rng: &mut Lcg, depth: usize) -> Value {
        if depth == 0 || rng.next() % 3 == 0 {
            return random_leaf(rng);
        }
        let parts: Vec<Value> = (0..2 + rng.next() % 2)
            .map(|_| random_filter(rng, depth - 1))
            .collect();
        if rng.next() % 2 == 0 {
            json!({ "andAll": parts })
        } else {
            json!({ "orAll": parts })
        }
    }

    /// A filter tree over resolved leaves, as the scan evaluates it.
    fn columns_match(filter: &Filter, columns: &HashMap<String, Column>, slot: usize) -> bool {
        match filter {
            Filter::AndAll(parts) => parts.iter().all(|p| columns_match(p, columns, slot)),
            Filter::OrAll(parts) => parts.iter().any(|p| columns_match(p, columns, slot)),
            leaf => match leaf.key().and_then(|k| columns.get(k)) {
                Some(column) => column.resolve(leaf).matches(slot),
                None => ResolvedLeaf::absent(leaf).matches(slot),
            },
        }
    }

    #[test]
    fn columns_answer_every_filter_as_the_json_values_do() {
        let mut rng = Lcg(7);
        let rows: Vec<Metadata> = (0..400)
            .map(|_| {
                let mut m = Metadata::new();
                for key in ["a", "b", "c"] {
                    if rng.next() % 4 != 0 {
                        m.insert(key.into(), random_value(&mut rng));
                    }
                }
                m
            })
            .collect();
        let mut columns: HashMap<String, Column> = HashMap::new();
        for (slot, row) in rows.iter().enumerate() {
            for (k, v) in row {
                columns.entry(k.clone()).or_default().set(slot, v);
            }
        }
        let mut checked = 0;
        for _ in 0..500 {
            let filter =
                Filter::parse(&random_filter(&mut rng, 3)).expect("generated filters parse");
            for (slot, row) in rows.iter().enumerate() {
                assert_eq!(
                    columns_match(&filter, &columns, slot),
                    filter.matches(row),
                    "slot {slot} {row:?} under {filter:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 500 * 400);
    }

    #[test]
    fn bits_agree_with_slot_by_slot_tests() {
        let mut column = Column::default();
        for slot in 0..150 {
            if slot % 7 != 0 {
                column.set(slot, &json!(slot % 3));
            }
        }
        for filter in [
            json!({"equals": {"key": "k", "value": 1}}),
            json!({"notEquals": {"key": "k", "value": 1}}),
        ] {
            let leaf = Filter::parse(&filter).expect("valid");
            let resolved = column.resolve(&leaf);
            // Past the column's end (slots 150..200 lack the attribute) too.
            let bits = resolved.bits(200);
            for slot in 0..200 {
                assert_eq!(
                    bits[slot / 64] >> (slot % 64) & 1 == 1,
                    resolved.matches(slot),
                    "slot {slot}"
                );
            }
        }
    }

    #[test]
    fn compaction_keeps_values_and_drops_unused_ones() {
        let mut column = Column::default();
        for (slot, v) in [json!("x"), json!(5), json!("y"), json!(5.0)]
            .iter()
            .enumerate()
        {
            column.set(slot, v);
        }
        assert_eq!(column.values.len(), 3, "5 and 5.0 share a code");
        column.clear(0);
        let kept = column.kept(&[1, 2, 3]).expect("values left");
        assert_eq!(kept.values, vec![json!(5), json!("y")]);
        let equals_five =
            Filter::parse(&json!({"equals": {"key": "k", "value": 5}})).expect("valid");
        let resolved = kept.resolve(&equals_five);
        assert_eq!(
            (0..4).map(|s| resolved.matches(s)).collect::<Vec<_>>(),
            [true, false, true, false]
        );
        let mut gone = Column::default();
        gone.set(0, &json!(1));
        assert!(gone.kept(&[]).is_none());
    }
}
