//! One error type for the library. The CLI maps [`Error::is_input_error`] to exit code 2 and
//! everything else to 1, so the split between "your file is wrong" and "this machine can't do
//! it" lives here, next to the variants, rather than in string matching at the binary edge.

use std::path::PathBuf;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file's contents do not describe a usable attention tensor.
    #[error("{}: {message}", path.display())]
    BadInput { path: PathBuf, message: String },

    /// The two inputs of a difference are not of one shape.
    #[error("{a} has shape {a_shape} but {b} has {b_shape}: a difference needs two inputs of the same shape")]
    ShapeMismatch {
        a: String,
        a_shape: String,
        b: String,
        b_shape: String,
    },

    /// An option value is out of range or does not fit the input (selection, cell size, ...).
    #[error("{0}")]
    BadOption(String),

    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// No window could be opened or drawn into (no display, no surface for the adapter).
    #[error("{0}")]
    Window(String),

    /// The GPU reported a validation, out-of-memory or device-lost error.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// Writing the output failed.
    #[error("{}: cannot write output: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn bad_input(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An option error that only makes sense next to the input it is about, prefixed with its
    /// name; other errors already say where they come from.
    pub(crate) fn about(self, name: &str) -> Self {
        match self {
            Error::BadOption(m) => Error::BadOption(format!("{name}: {m}")),
            other => other,
        }
    }

    /// True when the user can fix the error by changing the input or the options; false for
    /// problems of the environment (no adapter, GPU faults, unwritable output).
    pub fn is_input_error(&self) -> bool {
        match self {
            Error::BadInput { .. } | Error::BadOption(_) | Error::ShapeMismatch { .. } => true,
            // A missing input file is the user's to fix as well.
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
            ),
            Error::NoAdapter(_) | Error::Window(_) | Error::Gpu(_) | Error::Output { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
