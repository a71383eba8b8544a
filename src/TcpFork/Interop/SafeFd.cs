using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// Owns a file descriptor of the parent's. Every long-lived descriptor (listener, epoll, signalfd,
/// pagemap) is one of these, and each is in <see cref="ParentDescriptors"/> while open, so a forked
/// child closes it. The parent's per-connection descriptor is the exception: it lives for one accept →
/// launch → close step inside the accept loop, where a SafeHandle would be a finalizable allocation per
/// connection (see docs/fork-safety.md, invariant 3).
/// </summary>
internal sealed class SafeFd : SafeHandle
{
    public SafeFd(int fd) : base(-1, ownsHandle: true)
    {
        SetHandle(fd);
        ParentDescriptors.Track(this);
    }

    public override bool IsInvalid => handle < 0;

    /// <summary>The descriptor number; valid while this handle is open.</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle()
    {
        ParentDescriptors.Untrack(this);
        return Interop.Close((int)handle) == 0;
    }
}
