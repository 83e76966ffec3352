//! Copying an active file into its archive in one streaming pass that also
//! validates the JSON, counts entries by status and computes the SHA-256.
//!
//! Memory use does not grow with the file: bytes go through one fixed buffer,
//! and the scanner keeps only a small fingerprint per entry.

use std::fs::File;
use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::journal::hex;
use crate::scan::{ScanError, Scanner, Summary};

/// Size of the copy buffer.
const CHUNK: usize = 1024 * 1024;

/// The outcome of one pass over a file.
#[derive(Debug)]
pub struct Copied {
    pub bytes: u64,
    pub sha256: String,
    /// The scan result; an error means the file is not valid JSON or not an
    /// object of objects. The bytes were copied in full either way.
    pub scan: Result<Summary, ScanError>,
}

/// Reads `input` to its end, writing every byte to `output` when given.
pub fn copy_and_scan(input: &mut File, output: Option<&File>) -> io::Result<Copied> {
    copy_and_scan_observed(input, output, false, &mut |_| {})
}

/// Like [`copy_and_scan`], and passes each chunk that the scanner accepted
/// to `observe`, so that another reader of the same bytes needs no second
/// pass.
///
/// With `stop_when_invalid`, reading stops at the first byte that makes the
/// file invalid, for callers that will not keep an invalid copy. A file of a
/// gigabyte of zero bytes then costs one read, not a gigabyte of copying.
/// `bytes` and `sha256` then cover only what was read.
pub fn copy_and_scan_observed(
    input: &mut File,
    mut output: Option<&File>,
    stop_when_invalid: bool,
    observe: &mut dyn FnMut(&[u8]),
) -> io::Result<Copied> {
    let mut hasher = Sha256::new();
    let mut scanner = Scanner::new();
    let mut scan_error = None;
    let mut scanned_bytes = 0u64;
    let bytes = for_each_chunk(input, |chunk| {
        if let Some(file) = output.as_mut() {
            file.write_all(chunk)?;
        }
        scanned_bytes += chunk.len() as u64;
        hasher.update(chunk);
        if scan_error.is_none() {
            match scanner.feed(chunk) {
                Ok(()) => observe(chunk),
                Err(error) => scan_error = Some(error),
            }
        }
        if stop_when_invalid && scan_error.is_some() {
            return Err(io::Error::other(StopReading));
        }
        Ok(())
    });
    let bytes = match bytes {
        Err(error)
            if error
                .get_ref()
                .is_some_and(|inner| inner.is::<StopReading>()) =>
        {
            scanned_bytes
        }
        other => other?,
    };
    let scan = match scan_error {
        Some(error) => Err(error),
        None => scanner.finish(),
    };
    Ok(Copied {
        bytes,
        sha256: hex(&hasher.finalize()),
        scan,
    })
}

/// Marker error that ends [`for_each_chunk`] early without a failure.
#[derive(Debug)]
struct StopReading;

impl std::fmt::Display for StopReading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped at invalid content")
    }
}

impl std::error::Error for StopReading {}

/// Returns the size and SHA-256 of a file's content.
pub fn hash_file(input: &mut File) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let bytes = for_each_chunk(input, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    Ok((bytes, hex(&hasher.finalize())))
}

/// Calls `consume` on each chunk read from `input` until its end and returns
/// the byte count.
pub fn for_each_chunk(
    input: &mut File,
    mut consume: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let count = match input.read(&mut buffer) {
            Ok(0) => return Ok(bytes),
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        consume(&buffer[..count])?;
        bytes += count as u64;
    }
}
