//! What Drover's fuzz targets share (see issue 9): they are plain tests that replay a committed
//! corpus, then run a bounded number of proptest cases that mutate its seeds.
//!
//! [`cases`] reads the number of cases from [`CASES`], [`corpus`] reads a target's corpus
//! directory, and [`Mutations`] is the byte-mutation engine: a target says how it is tuned
//! (tokens worth inserting, how much to insert, remove and splice, whether splices move whole
//! blocks), takes a [`Mutation`] strategy from [`Mutations::strategy`] and applies the generated
//! mutations to a seed with [`Mutations::apply`].

use proptest::prelude::*;
use proptest::strategy::Union;
use std::path::Path;

/// The environment variable that sets the number of proptest cases of every fuzz target.
pub const CASES: &str = "DROVER_FUZZ_CASES";

/// The number of cases [`CASES`] asks for, or `default` when it is unset or not a number.
pub fn cases(default: u32) -> u32 {
    std::env::var(CASES).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// The files of a corpus directory as (file name, contents), in file name order. Panics when the
/// directory or one of its files cannot be read: the corpus is committed.
pub fn corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("the corpus {} is committed: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("list the corpus").path();
            let name = path.file_name().expect("a file").to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

/// One change to an input; positions are taken modulo the input's length.
#[derive(Debug, Clone)]
pub enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    InsertBytes {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Inserts [`Mutations::tokens`]`[token_idx]`.
    InsertToken {
        at: usize,
        token_idx: usize,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Inserts a piece of another seed.
    Splice {
        at: usize,
        seed_idx: usize,
        from: usize,
        len: usize,
    },
}

/// A target's tuning of the mutation engine. Every mutation has weight 1 but
/// [`Mutation::InsertToken`], which has [`token_weight`](Self::token_weight); the ranges of
/// lengths are `1..max`.
#[derive(Debug, Clone, Copy)]
pub struct Mutations {
    /// What [`Mutation::InsertToken`] inserts; with none, that mutation is never generated.
    pub tokens: &'static [&'static str],
    /// The weight of [`Mutation::InsertToken`] against the others' 1.
    pub token_weight: u32,
    /// Whether [`Mutation::SetByte`] is generated.
    pub set_byte: bool,
    /// [`Mutation::InsertBytes`] inserts `1..max_insert` random bytes.
    pub max_insert: usize,
    /// [`Mutation::Remove`] removes `1..max_remove` bytes.
    pub max_remove: usize,
    /// [`Mutation::Splice`] inserts pieces of `1..max_splice` bytes.
    pub max_splice: usize,
    /// With `Some(n)`, half of the splices are one block of `n` bytes, and a piece of exactly `n`
    /// bytes is taken at a multiple of `n` in the other seed: a tar stream's headers move as
    /// units.
    pub block: Option<usize>,
}

impl Mutations {
    /// Generates one mutation, with this tuning.
    pub fn strategy(&self) -> impl Strategy<Value = Mutation> {
        let tokens = self.tokens.len();
        let splice_len = match self.block {
            Some(block) => prop_oneof![Just(block), 1..self.max_splice].boxed(),
            None => (1..self.max_splice).boxed(),
        };
        let mut options: Vec<(u32, BoxedStrategy<Mutation>)> =
            vec![(1, (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }).boxed())];
        if self.set_byte {
            let set = (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte });
            options.push((1, set.boxed()));
        }
        let insert = (any::<usize>(), prop::collection::vec(any::<u8>(), 1..self.max_insert))
            .prop_map(|(at, bytes)| Mutation::InsertBytes { at, bytes });
        options.push((1, insert.boxed()));
        if tokens > 0 {
            let token = (any::<usize>(), 0..tokens).prop_map(|(at, token_idx)| Mutation::InsertToken { at, token_idx });
            options.push((self.token_weight, token.boxed()));
        }
        let remove = (any::<usize>(), 1..self.max_remove).prop_map(|(at, len)| Mutation::Remove { at, len });
        options.push((1, remove.boxed()));
        options.push((1, any::<usize>().prop_map(|at| Mutation::Truncate { at }).boxed()));
        let splice = (any::<usize>(), any::<usize>(), any::<usize>(), splice_len)
            .prop_map(|(at, seed_idx, from, len)| Mutation::Splice { at, seed_idx, from, len });
        options.push((1, splice.boxed()));
        Union::new_weighted(options)
    }

    /// Applies `mutations` to `input` in order; [`Mutation::Splice`] takes its pieces from
    /// `seeds`, which must not be empty.
    pub fn apply(&self, seeds: &[Vec<u8>], mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
        let pos = |at: usize, len: usize| at % (len + 1);
        for mutation in mutations {
            match mutation {
                Mutation::FlipBit { at, bit } if !input.is_empty() => {
                    let at = at % input.len();
                    input[at] ^= 1 << bit;
                }
                Mutation::SetByte { at, byte } if !input.is_empty() => {
                    let at = at % input.len();
                    input[at] = *byte;
                }
                Mutation::FlipBit { .. } | Mutation::SetByte { .. } => {}
                Mutation::InsertBytes { at, bytes } => {
                    let at = pos(*at, input.len());
                    input.splice(at..at, bytes.iter().copied());
                }
                Mutation::InsertToken { at, token_idx } => {
                    let at = pos(*at, input.len());
                    input.splice(at..at, self.tokens[*token_idx].bytes());
                }
                Mutation::Remove { at, len } => {
                    let at = pos(*at, input.len());
                    let end = (at + len).min(input.len());
                    input.drain(at..end);
                }
                Mutation::Truncate { at } => input.truncate(pos(*at, input.len())),
                Mutation::Splice { at, seed_idx, from, len } => {
                    let other = &seeds[seed_idx % seeds.len()];
                    let from = match self.block {
                        Some(block) if *len == block => pos(*from, other.len()) / block * block,
                        _ => pos(*from, other.len()),
                    };
                    let piece = other[from..(from + len).min(other.len())].to_vec();
                    let at = pos(*at, input.len());
                    input.splice(at..at, piece);
                }
            }
        }
        input
    }
}
