//! The window and its surface: where the viewer's frames go. Opening, sizing, acquiring and
//! presenting live here; what a frame holds comes from the engine, as for export.

use std::sync::Arc;

use winit::event_loop::ActiveEventLoop;
use winit::window::Window;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// A window with its configured surface.
pub(super) struct Surface {
    pub(super) window: Arc<Window>,
    surface: wgpu::Surface<'static>,
    config: wgpu::SurfaceConfiguration,
}

/// A window and its surface, not configured yet.
pub(super) struct Opened {
    window: Arc<Window>,
    surface: wgpu::Surface<'static>,
}

impl Opened {
    /// The window's physical pixels per logical pixel.
    pub(super) fn scale_factor(&self) -> f64 {
        self.window.scale_factor()
    }
}

impl Surface {
    /// Opens a window titled `title` and picks the adapter that can present to it. The figure
    /// is laid out before the surface is configured, so its size can pick the window's.
    pub(super) fn open(event_loop: &ActiveEventLoop, title: &str) -> Result<(Opened, Gpu)> {
        let instance = Gpu::instance();
        let attributes = Window::default_attributes()
            .with_title(title)
            .with_visible(true);
        let window = Arc::new(
            event_loop
                .create_window(attributes)
                .map_err(super::window_error)?,
        );
        let surface = instance
            .create_surface(window.clone())
            .map_err(|e| Error::Window(format!("cannot draw into the window: {e}")))?;
        let gpu = Gpu::for_surface(instance, &surface)?;
        Ok((Opened { window, surface }, gpu))
    }

    /// Asks for a window of `size` pixels and configures its surface to that size.
    pub(super) fn configure(opened: Opened, gpu: &Gpu, size: (u32, u32)) -> Surface {
        let Opened { window, surface } = opened;
        let _ = window.request_inner_size(winit::dpi::PhysicalSize::new(size.0, size.1));
        let caps = surface.get_capabilities(&gpu.adapter);
        // A non-sRGB format: the figure's bytes are already display-encoded colormap values.
        let format = caps
            .formats
            .iter()
            .copied()
            .find(|f| !f.is_srgb())
            .unwrap_or(caps.formats[0]);
        let config = wgpu::SurfaceConfiguration {
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
            format,
            color_space: Default::default(),
            width: size.0.max(1),
            height: size.1.max(1),
            present_mode: wgpu::PresentMode::AutoVsync,
            desired_maximum_frame_latency: 2,
            alpha_mode: caps.alpha_modes[0],
            view_formats: vec![],
        };
        surface.configure(&gpu.device, &config);
        Surface {
            window,
            surface,
            config,
        }
    }

    /// The surface's size in pixels.
    pub(super) fn size(&self) -> (u32, u32) {
        (self.config.width, self.config.height)
    }

    /// Follows the window to `w` × `h` pixels; false (and nothing changes) for an empty one or
    /// the size it has (configuring waits for the device to idle, and fails while the viewer's
    /// worker submits).
    pub(super) fn resize(&mut self, gpu: &Gpu, w: u32, h: u32) -> bool {
        if w == 0 || h == 0 || (w, h) == self.size() {
            return false;
        }
        self.config.width = w;
        self.config.height = h;
        self.surface.configure(&gpu.device, &self.config);
        true
    }

    /// The texture to draw the next frame into; `None` when there is none this time (an
    /// outdated or lost surface is configured again for the next one).
    pub(super) fn frame(&self, gpu: &Gpu) -> Option<wgpu::SurfaceTexture> {
        match self.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(f)
            | wgpu::CurrentSurfaceTexture::Suboptimal(f) => Some(f),
            wgpu::CurrentSurfaceTexture::Outdated | wgpu::CurrentSurfaceTexture::Lost => {
                self.surface.configure(&gpu.device, &self.config);
                None
            }
            _ => None,
        }
    }
}
