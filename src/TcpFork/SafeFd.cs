using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// Owns a file descriptor. Every long-lived descriptor (listener, epoll, signalfd, pipe) is one of
/// these. The parent's per-connection descriptor is the exception: it lives for one accept → launch →
/// close step inside the accept loop, where a SafeHandle would be a finalizable allocation per
/// connection (see docs/fork-safety.md, invariant 3).
/// </summary>
internal sealed class SafeFd : SafeHandle
{
    public SafeFd(int fd, bool ownsHandle = true) : base(-1, ownsHandle) => SetHandle(fd);

    public override bool IsInvalid => handle < 0;

    /// <summary>The descriptor number; valid while this handle is open.</summary>
    public int Fd => (int)handle;

    protected override bool ReleaseHandle() => Interop.Close((int)handle) == 0;
}
