// Generated from deploy/triage.rules; a test keeps the two identical.
extension TriageRules {
    static let shippedText = """
# DumpFleet triage rules: which frames are never the culprit of a crash.
#
# In the spirit of WinDbg's triage.ini. When DumpFleet looks for the culprit it walks the
# faulting stack from the top and blames the first frame no `skip` rule matches; a `blame` rule
# wins over `skip` for the frames it matches. Patterns are a module name without its extension
# (ntoskrnl, ntkrnlmp and friends are all `nt`), optionally `!function`, and may end in `*`.
# Matching ignores case. Edit a copy and pass it with `dumpfleet analyze --rules FILE`.

# The kernel, the HAL and the kernel's own helpers.
skip nt
skip hal
skip ci
skip cng
skip ksecdd
skip clipsp
skip msrpc
skip werkernel
skip pshed
skip mcupdate_*
skip kd

# Processor power management drivers: what an idle CPU runs.
skip intelppm
skip amdppm
skip processr

# Frameworks and class drivers that call into the real culprit.
skip wdf01000
skip wdfldr
skip fltmgr
skip storport
skip classpnp
skip disk
skip partmgr
skip volmgr
skip volmgrx
skip volsnap
skip ntfs
skip refs
skip acpi
skip pci
skip usbport
skip usbxhci
skip ucx01000
skip ks
skip portcls

# Networking: NDIS and the Microsoft stack above it.
skip ndis
skip netio
skip tcpip
skip afd
skip fwpkclnt
skip http
skip mrxsmb
skip rdbss

# Graphics: the DirectX kernel that calls display miniport drivers.
skip dxgkrnl
skip dxgmms1
skip dxgmms2
skip watchdog
skip win32k
skip win32kbase
skip win32kfull
skip basicdisplay
skip basicrender

# Hypervisor-guest plumbing that is only ever a bystander.
skip vmbus
skip winhv
"""
}
