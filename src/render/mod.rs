//! Renderings of a run or a sweep for people: self-contained HTML reports (`html`) and Mermaid
//! sequence diagrams (`mermaid`). Each is a pure function of its inputs (a run directory, a
//! sweep's results): the same inputs always give the same bytes.

pub mod html;
pub mod mermaid;
