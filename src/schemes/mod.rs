//! The compiled-in scheme plugins. Adding a chain family or a scheme is adding a factory here.

pub mod evm;
pub mod svm;

use crate::scheme::SchemeFactory;

/// Every plugin this binary can build, matched to configured networks by CAIP-2 namespace.
pub fn builtin() -> Vec<Box<dyn SchemeFactory>> {
    vec![
        Box::new(evm::EvmExactFactory),
        Box::new(svm::SvmExactFactory),
    ]
}
