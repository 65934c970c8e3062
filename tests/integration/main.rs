//! The one integration test binary (each extra binary costs a full link): modules by topic.
//! Everything runs offline against a fake Plaid on loopback.

mod binary;
mod cli;
mod clients;
mod connections;
mod contract;
mod corpus;
mod credentials;
mod dates;
mod demo;
mod detectors;
mod docs;
mod drift;
mod errors;
mod failures;
mod faults;
mod keys;
mod packages;
mod privacy;
mod pseudonyms;
mod record;
mod reliability;
mod replay;
mod sessions;
mod store;
mod support;
mod verdict;
mod violations;
mod webhooks;
mod workflow;
