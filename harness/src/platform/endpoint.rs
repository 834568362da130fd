//! Where a service is, as checks see it; defined with the check kinds, which use it.

pub use crate::kinds::endpoint::Endpoint;
