//! The compiled-in scheme plugins. Adding a chain family or a scheme is adding a factory here.

pub mod evm;
pub mod svm;

use crate::scheme::SchemeFactory;

/// Every plugin this binary can build, matched to configured networks by CAIP-2 namespace.
pub fn builtin() -> Vec<Box<dyn SchemeFactory>> {
    // The EVM factories share their networks: one chain connection and one nonce lane per key,
    // whichever EVM scheme signs with it.
    let evm = evm::Networks::default();
    vec![
        Box::new(evm::EvmExactFactory::new(evm.clone())),
        Box::new(evm::EvmUptoFactory::new(evm)),
        Box::new(svm::SvmExactFactory),
    ]
}
