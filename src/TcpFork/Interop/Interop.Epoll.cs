using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// struct epoll_event, whose layout depends on the architecture: the kernel packs it on x86-64 only
/// (<c>__EPOLL_PACKED</c>: 12 bytes, data at 4); on arm64 and everywhere else a 64-bit field is 8-aligned
/// (16 bytes, data at 8). One C# struct cannot be both, so events live in plain bytes and are read and
/// written here, with the layout chosen once for the running process (checked against the C headers of
/// both architectures by InteropLayoutTests).
/// </summary>
internal static unsafe class EpollEvent
{
    /// <summary>(sizeof(struct epoll_event), offsetof(data)) on <paramref name="architecture"/>.</summary>
    public static (int Size, int DataOffset) LayoutOn(Architecture architecture) =>
        architecture is Architecture.X64 or Architecture.X86 ? (12, 4) : (16, 8);

    private static readonly (int Size, int DataOffset) s_layout = LayoutOn(RuntimeInformation.ProcessArchitecture);

    /// <summary>Room for one event on any architecture (a stack buffer; an array of events takes <see cref="MaxSize"/> each).</summary>
    public const int MaxSize = 16;

    public static void Write(byte* ev, uint events, ulong data)
    {
        *(uint*)ev = events;
        *(ulong*)(ev + s_layout.DataOffset) = data; // unaligned only on x86-64, which allows it
    }

    /// <summary>The data of event <paramref name="index"/> in an array filled by epoll_wait.</summary>
    public static ulong DataAt(byte* events, int index) => *(ulong*)(events + (index * s_layout.Size) + s_layout.DataOffset);

    /// <summary>The event mask (EPOLLIN, EPOLLRDHUP…) of event <paramref name="index"/> in an array filled by epoll_wait.</summary>
    public static uint EventsAt(byte* events, int index) => *(uint*)(events + (index * s_layout.Size));
}

internal static unsafe partial class Interop
{
    internal const int EPOLL_CLOEXEC = 0x80000;
    internal const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    internal const uint EPOLLIN = 0x1, EPOLLERR = 0x8, EPOLLHUP = 0x10, EPOLLRDHUP = 0x2000;

    [LibraryImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    internal static partial int EpollCreate1(int flags);

    /// <summary><paramref name="ev"/>: one event written by <see cref="EpollEvent.Write"/>.</summary>
    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    internal static partial int EpollCtl(int epfd, int op, int fd, byte* ev);

    /// <summary><paramref name="events"/>: room for <paramref name="maxEvents"/> events, read with <see cref="EpollEvent.DataAt"/>.</summary>
    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    internal static partial int EpollWait(int epfd, byte* events, int maxEvents, int timeoutMs);
}
