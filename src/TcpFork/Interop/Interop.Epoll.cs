using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>struct epoll_event (packed on x86-64).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 4)]
internal struct EpollEvent
{
    public uint Events;
    public ulong Data;
}

internal static unsafe partial class Interop
{
    internal const int EPOLL_CLOEXEC = 0x80000;
    internal const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    internal const uint EPOLLIN = 0x1;

    [LibraryImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    internal static partial int EpollCreate1(int flags);

    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    internal static partial int EpollCtl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    internal static partial int EpollWait(int epfd, EpollEvent* events, int maxEvents, int timeoutMs);
}
