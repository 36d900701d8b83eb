//! Catalogue of hostile inputs (filled in below).
