//! A decoding budget for what a peer sends: a serde `Deserializer`
//! wrapper that charges every value it decodes its in-memory size (at
//! least one byte, so a sequence of zero-sized values cannot spin for
//! ever) and every string or byte string its length, and fails once the
//! budget is spent. postcard alone would let a 4 MiB request decode into
//! gigabytes: a `Vec<E>` whose enum `E` has one 4 KiB variant and one
//! empty one costs a byte per element on the wire and 4 KiB in memory.
//! The charge over-counts nested values (a struct and its fields both
//! pay), which the budget's factor absorbs.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// How many bytes decoding may cost for each byte decoded.
pub const FACTOR: usize = 16;
/// What decoding may cost whatever the input's size.
pub const FLOOR: usize = 1 << 20;
/// The most any one value may cost.
pub const CAP: usize = 64 << 20;

/// Bytes left to spend.
pub(crate) struct Budget {
    left: Cell<usize>,
    total: usize,
    input: usize,
}

impl Budget {
    /// The budget of decoding `input` bytes: `FACTOR` × input +
    /// `FLOOR`, at most `CAP`.
    pub(crate) fn for_input(input: usize) -> Budget {
        let total = input.saturating_mul(FACTOR).saturating_add(FLOOR).min(CAP);
        Budget { left: Cell::new(total), total, input }
    }

    fn charge<E: de::Error>(&self, n: usize) -> Result<(), E> {
        match self.left.get().checked_sub(n.max(1)) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.left.set(0);
                Err(E::custom(accord_ipc::fds::note_error(format!(
                    "decoding {} bytes would take more than {} bytes of memory (at most {FACTOR} times the input plus {FLOOR}, {CAP} in all)",
                    self.input, self.total
                ))))
            }
        }
    }
}

/// `inner` with every value it yields charged to `budget`.
pub(crate) struct De<'b, D> {
    pub(crate) inner: D,
    pub(crate) budget: &'b Budget,
}

struct Vis<'b, V> {
    inner: V,
    budget: &'b Budget,
}

macro_rules! forward_de {
    ($($m:ident),*) => {$(
        fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$m(Vis { inner: visitor, budget: self.budget })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;
    forward_de!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any
    );
    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(name, Vis { inner: visitor, budget: self.budget })
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(name, Vis { inner: visitor, budget: self.budget })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(len, Vis { inner: visitor, budget: self.budget })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, name: &'static str, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(name, len, Vis { inner: visitor, budget: self.budget })
    }
    fn deserialize_struct<V: Visitor<'de>>(self, name: &'static str, fields: &'static [&'static str], visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, Vis { inner: visitor, budget: self.budget })
    }
    fn deserialize_enum<V: Visitor<'de>>(self, name: &'static str, variants: &'static [&'static str], visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(name, variants, Vis { inner: visitor, budget: self.budget })
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($m:ident: $t:ty),*) => {$(
        fn $m<E: de::Error>(self, v: $t) -> Result<Self::Value, E> {
            self.budget.charge(std::mem::size_of::<V::Value>())?;
            self.inner.$m(v)
        }
    )*};
}

/// The same for strings and byte strings: their length is charged too.
macro_rules! forward_visit_len {
    ($($m:ident: $t:ty),*) => {$(
        fn $m<E: de::Error>(self, v: $t) -> Result<Self::Value, E> {
            self.budget.charge(std::mem::size_of::<V::Value>().saturating_add(v.len()))?;
            self.inner.$m(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Vis<'_, V> {
    type Value = V::Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }
    forward_visit!(
        visit_bool: bool, visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64, visit_i128: i128,
        visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64, visit_u128: u128,
        visit_f32: f32, visit_f64: f64, visit_char: char
    );
    forward_visit_len!(
        visit_str: &str, visit_borrowed_str: &'de str, visit_string: String,
        visit_bytes: &[u8], visit_borrowed_bytes: &'de [u8], visit_byte_buf: Vec<u8>
    );
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_none()
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_some(De { inner: d, budget: self.budget })
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_newtype_struct(De { inner: d, budget: self.budget })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_seq(Access { inner: seq, budget: self.budget })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_map(Access { inner: map, budget: self.budget })
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.budget.charge(std::mem::size_of::<V::Value>())?;
        self.inner.visit_enum(Access { inner: data, budget: self.budget })
    }
}

/// A sequence, map, enum or variant whose elements are charged too.
struct Access<'b, A> {
    inner: A,
    budget: &'b Budget,
}

/// A seed whose value is decoded through [`De`].
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(De { inner: d, budget: self.budget })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed { inner: seed, budget: self.budget })
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Seed { inner: seed, budget: self.budget })
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Seed { inner: seed, budget: self.budget })
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<'b, A> {
    type Error = A::Error;
    type Variant = Access<'b, A::Variant>;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant), A::Error> {
        let (v, variant) = self.inner.variant_seed(Seed { inner: seed, budget: self.budget })?;
        Ok((v, Access { inner: variant, budget: self.budget }))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;
    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed { inner: seed, budget: self.budget })
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, Vis { inner: visitor, budget: self.budget })
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, Vis { inner: visitor, budget: self.budget })
    }
}

/// Decodes a `T` from the front of `bytes` within the budget of
/// [`Budget::for_input`]; returns it and the bytes after it.
pub(crate) fn take<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> postcard::Result<(T, &[u8])> {
    take_within(bytes, &Budget::for_input(bytes.len()))
}

/// [`take`] charging `budget` (one budget for all the arguments of a
/// request).
pub(crate) fn take_within<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8], budget: &Budget) -> postcard::Result<(T, &'a [u8])> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let v = T::deserialize(De { inner: &mut de, budget })?;
    Ok((v, de.finalize()?))
}

thread_local! {
    /// The budget of the request whose arguments this thread decodes
    /// (set when the request is opened).
    static REQUEST: std::cell::RefCell<Option<Budget>> = const { std::cell::RefCell::new(None) };
}

/// Starts the budget of a request of `len` bytes: the arguments decoded
/// next on this thread share it.
pub(crate) fn open_request(len: usize) {
    REQUEST.with(|r| *r.borrow_mut() = Some(Budget::for_input(len)));
}

/// [`take`] within the current request's budget ([`open_request`]), or
/// one of its own if none is open.
pub(crate) fn take_arg<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> postcard::Result<(T, &'a [u8])> {
    REQUEST.with(|r| match &*r.borrow() {
        Some(budget) => take_within(bytes, budget),
        None => take_within(bytes, &Budget::for_input(bytes.len())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attack's shape: clippy's warning is the point.
    #[allow(clippy::large_enum_variant)]
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    enum Lopsided {
        Small,
        Big([[u64; 32]; 16]),
    }

    #[test]
    fn ordinary_values_decode_as_before() {
        type Mixed = (Vec<String>, Option<Vec<u32>>, std::collections::BTreeMap<String, (u8, bool)>);
        let v: Mixed = (vec!["a".into(), "bc".into()], Some(vec![1, 2, 3]), [("k".to_owned(), (7, true))].into());
        let mut b = postcard::to_stdvec(&v).unwrap();
        b.push(0xee);
        let (back, rest) = take::<Mixed>(&b).unwrap();
        assert_eq!((back, rest), (v, &[0xee][..]));
        let big = vec![Lopsided::Big([[3; 32]; 16]); 4];
        let b = postcard::to_stdvec(&big).unwrap();
        assert_eq!(take::<Vec<Lopsided>>(&b).unwrap().0, big);
    }

    /// A byte per element on the wire, 4 KiB in memory: 100,000 of them
    /// would be 400 MiB; refused after spending the budget.
    #[test]
    fn amplifying_values_are_refused() {
        let small = vec![Lopsided::Small; 100_000];
        let b = postcard::to_stdvec(&small).unwrap();
        assert!(b.len() < 110_000);
        let e = take::<Vec<Lopsided>>(&b).unwrap_err();
        assert!(matches!(e, postcard::Error::SerdeDeCustom), "{e:?}");
        let why = accord_ipc::fds::take_error().unwrap();
        assert!(why.contains("would take more than"), "{why}");
        // Zero-sized elements announced by the billion cost a byte each,
        // so they end too, quickly.
        let mut b = Vec::new();
        let mut n: u64 = 1 << 40;
        while n >= 0x80 {
            b.push((n as u8) | 0x80);
            n >>= 7;
        }
        b.push(n as u8);
        assert!(take::<Vec<()>>(&b).is_err());
    }

    /// The arguments of one request share its budget: four that each fit
    /// alone do not fit together.
    #[test]
    fn a_request_has_one_budget_for_all_its_arguments() {
        let one = postcard::to_stdvec(&vec![Lopsided::Small; 200]).unwrap();
        let request: Vec<u8> = std::iter::repeat_n(&one, 4).flatten().copied().collect();
        open_request(request.len());
        let mut rest = &request[..];
        let mut refused = false;
        for _ in 0..4 {
            match take_arg::<Vec<Lopsided>>(rest) {
                Ok((_, tail)) => rest = tail,
                Err(_) => refused = true,
            }
        }
        assert!(refused, "800 values of 4 KiB (3.2 MiB) from {} bytes", request.len());
        REQUEST.with(|r| *r.borrow_mut() = None);
        assert!(take_arg::<Vec<Lopsided>>(&one).is_ok(), "one alone fits");
    }
}
