//! OpenTelemetry: export a run as OTLP/JSON spans (GenAI semantic conventions), and import a
//! production trace as a scenario plus a cassette that replay it.

pub mod export;
pub mod import;
