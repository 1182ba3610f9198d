//! GetTaxi: match a rider with a nearby available driver, regional surge pricing from supply and
//! demand, and every position before and during a ride kept for cost computation.
//!
//! [`topics`] lists the topics; the services come one file per box of the architecture slide.

pub mod topics;
