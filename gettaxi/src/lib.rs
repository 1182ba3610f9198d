//! GetTaxi: match a rider with a nearby available driver, regional surge pricing from supply and
//! demand, and every position before and during a ride kept for cost computation.
//!
//! [`topics`] lists the topics (the slide in code), [`events`] the records; one file per box of
//! the architecture slide (`README.md`): the position services, the ride service, driver
//! matching, surge pricing, the taxi cost service, the analytics sink. [`geo`] and [`index`]
//! are the H3 geometry and the nearest-taxi search, [`fare`] the tariff; [`app`] is the case
//! study on the service scaffold.

pub mod analytics_sink;
pub mod app;
pub mod bench;
pub mod commands;
pub mod demo;
pub mod driver_matching;
pub mod events;
pub mod fare;
pub mod geo;
pub mod index;
pub mod live;
pub mod ride_service;
pub mod simulator;
pub mod stored_fare;
pub mod surge_pricing;
pub mod taxi_cost_service;
pub mod taxi_position_service;
pub mod topics;
pub mod user_position_service;
pub mod weather_service;
