//! Solana (SVM) `exact` building blocks (digest §5), owned here instead of pulling in the Solana
//! SDK: [`keys`] (public keys, program ids, PDAs and ATAs, ed25519 keypairs), [`wire`] (the
//! transaction wire format, decoded and re-encoded byte for byte) and [`instructions`] (typed
//! parsing of the instructions the exact scheme inspects).

pub mod instructions;
pub mod keys;
pub mod wire;
