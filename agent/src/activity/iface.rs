//! Interface names: whether the kernel knows one, and by which index.
//!
//! [`super::route`] (which interface `auto` means) and [`super::packet`] (the counter) both ask
//! this; it asks nothing of them, so the arrows between the three go one way.
#![allow(unsafe_code)]

/// The index of the interface `name`, or `None` when there is no such interface.
///
/// One `if_nametoindex` (a socket and an ioctl), where `pnet_datalink::interfaces()` dumps
/// every interface and address over netlink: this is what `activity --interface` and
/// `interface = "auto"` check names with.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_index_knows_loopback_and_nothing_else() {
        assert!(interface_index("lo").is_some_and(|i| i > 0));
        assert_eq!(interface_index("cmnosuch0"), None);
        assert_eq!(interface_index("lo\0x"), None);
        assert_eq!(interface_index(""), None);
    }
}
