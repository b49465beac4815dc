//! The event source mapping as users and pollers see it: its AWS wire shape ([`mapping`]), its
//! lifecycle ([`state`]), its rules ([`validate`]), where its given-up records go
//! ([`destination`]) and the store seam ([`store`]).

pub mod access;
pub mod destination;
mod invalid;
pub mod mapping;
pub mod state;
pub mod store;
pub mod validate;

pub use mapping::EventSourceMapping;
pub use state::State;
pub use validate::InvalidMapping;
