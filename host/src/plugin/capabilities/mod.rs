//! The capabilities the host gives to guests, one small module each. Nothing else is
//! imported: no filesystem, no network, no environment.

pub mod address;
pub mod cache;
pub mod log;

/// Shared handle to an object reader.
pub type ObjectReaderRef = std::sync::Arc<dyn cache::ObjectReader>;
/// Shared handle to an address translator.
pub type AddressTranslatorRef = std::sync::Arc<dyn address::AddressTranslator>;
