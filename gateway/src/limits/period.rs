//! Budget periods, shared with the operator (see [`llm_gateway_crds::usage`]).

pub use llm_gateway_crds::usage::Period;
