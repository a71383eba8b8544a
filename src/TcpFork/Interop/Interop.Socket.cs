using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const int AF_UNIX = 1, AF_INET = 2, AF_INET6 = 10;
    internal const int SOCK_STREAM = 1, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
    internal const int SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_TYPE = 3, SO_REUSEPORT = 15, SO_ACCEPTCONN = 30, SO_KEEPALIVE = 9, IPPROTO_IPV6 = 41, IPV6_V6ONLY = 26;
    internal const int TCP_KEEPIDLE = 4, TCP_KEEPINTVL = 5, TCP_KEEPCNT = 6;
    internal const int SHUT_WR = 1, SHUT_RDWR = 2;
    internal const int MSG_NOSIGNAL = 0x4000;

    [LibraryImport(Libc, EntryPoint = "socket", SetLastError = true)]
    internal static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(Libc, EntryPoint = "bind", SetLastError = true)]
    internal static partial int Bind(int fd, SockAddr* addr, int len);

    [LibraryImport(Libc, EntryPoint = "listen", SetLastError = true)]
    internal static partial int Listen(int fd, int backlog);

    [LibraryImport(Libc, EntryPoint = "accept4", SetLastError = true)]
    private static partial int Accept4Once(int fd, SockAddr* addr, int* len, int flags);

    /// <summary>accept4(2), retried on EINTR.</summary>
    internal static int Accept4(int fd, SockAddr* addr, int* len, int flags)
    {
        int r;
        while (Retry(r = Accept4Once(fd, addr, len, flags))) { }
        return r;
    }

    [LibraryImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    internal static partial int SetSockOpt(int fd, int level, int name, int* value, int len);

    [LibraryImport(Libc, EntryPoint = "getsockname", SetLastError = true)]
    internal static partial int GetSockName(int fd, SockAddr* addr, int* len);

    [LibraryImport(Libc, EntryPoint = "getpeername", SetLastError = true)]
    internal static partial int GetPeerName(int fd, SockAddr* addr, int* len);

    [LibraryImport(Libc, EntryPoint = "socketpair", SetLastError = true)]
    internal static partial int SocketPair(int domain, int type, int protocol, int* fds);

    [LibraryImport(Libc, EntryPoint = "shutdown", SetLastError = true)]
    internal static partial int Shutdown(int fd, int how);

    internal const int SO_RCVTIMEO = 20, SO_SNDTIMEO = 21;

    /// <summary>
    /// SO_RCVTIMEO and SO_SNDTIMEO: a blocking read or write on <paramref name="fd"/> gives up (EAGAIN)
    /// after <paramref name="milliseconds"/>. -1 with errno set on failure.
    /// </summary>
    internal static int SetTimeouts(int fd, long milliseconds)
    {
        long* timeval = stackalloc long[2];
        timeval[0] = milliseconds / 1000;
        timeval[1] = milliseconds % 1000 * 1000;
        return SetSockOpt(fd, SOL_SOCKET, SO_RCVTIMEO, (int*)timeval, 2 * sizeof(long)) < 0
            || SetSockOpt(fd, SOL_SOCKET, SO_SNDTIMEO, (int*)timeval, 2 * sizeof(long)) < 0 ? -1 : 0;
    }

    [LibraryImport(Libc, EntryPoint = "send", SetLastError = true)]
    private static partial nint SendOnce(int fd, byte* buffer, nuint len, int flags);

    internal const int MSG_PEEK = 0x2, SO_RCVLOWAT = 18;

    [LibraryImport(Libc, EntryPoint = "recv", SetLastError = true)]
    private static partial nint RecvOnce(int fd, byte* buffer, nuint len, int flags);

    /// <summary>recv(2) with <paramref name="flags"/>, retried on EINTR.</summary>
    internal static nint Recv(int fd, byte* buffer, nuint len, int flags)
    {
        nint r;
        while (Retry(r = RecvOnce(fd, buffer, len, flags))) { }
        return r;
    }

    /// <summary>send(2) with MSG_NOSIGNAL, retried on EINTR.</summary>
    internal static nint Send(int fd, byte* buffer, nuint len)
    {
        nint r;
        while (Retry(r = SendOnce(fd, buffer, len, MSG_NOSIGNAL))) { }
        return r;
    }
}

internal static unsafe partial class Interop
{
    internal const int IPPROTO_TCP = 6, TCP_NODELAY = 1, TCP_INFO = 11;
    internal const int TcpInfoSize = 232;
    internal const int TcpInfoLastDataSent = 44, TcpInfoLastDataRecv = 52;
    internal const int MSG_DONTWAIT = 0x40;

    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    internal static partial int GetSockOpt(int fd, int level, int name, void* value, int* len);

    /// <summary>Milliseconds since data last moved either way on a TCP socket (TCP_INFO), or -1.</summary>
    internal static long IdleMilliseconds(int fd)
    {
        byte* info = stackalloc byte[TcpInfoSize];
        int len = TcpInfoSize;
        if (GetSockOpt(fd, IPPROTO_TCP, TCP_INFO, info, &len) < 0 || len < TcpInfoLastDataRecv + 4)
        {
            return -1;
        }
        return Math.Min(*(uint*)(info + TcpInfoLastDataSent), *(uint*)(info + TcpInfoLastDataRecv));
    }

    internal const int FIONREAD = 0x541B;

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlInt(int fd, nuint request, int* value);

    /// <summary>Bytes received and not yet read on <paramref name="fd"/> (FIONREAD), or -1.</summary>
    internal static int UnreadBytes(int fd)
    {
        int n;
        return IoctlInt(fd, FIONREAD, &n) == 0 ? n : -1;
    }

    internal const int SO_PEERCRED = 17;

    /// <summary>struct ucred.</summary>
    internal struct UCred
    {
        public int Pid;
        public uint Uid;
        public uint Gid;
    }

    /// <summary>
    /// The uid of the process that connected a unix socket (SO_PEERCRED: recorded by the kernel at
    /// connect, so a client cannot change it afterwards), or <see cref="uint.MaxValue"/> — (uid_t)-1, no
    /// real user's — if it cannot be read.
    /// </summary>
    internal static uint PeerUid(int fd)
    {
        UCred cred;
        int len = sizeof(UCred);
        return GetSockOpt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && len == sizeof(UCred) ? cred.Uid : uint.MaxValue;
    }

    internal const int SO_ATTACH_FILTER = 26;

    [LibraryImport(Libc, EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int SetSockOptFilter(int fd, int level, int name, SockFilterProgram* value, int len);

    /// <summary>struct sock_fprog: the count, then (aligned) the instructions; the same on every 64-bit ABI.</summary>
    private struct SockFilterProgram
    {
        public ushort Length;
        public ulong* Instructions;
    }

    /// <summary>
    /// Attaches a classic BPF filter that drops a listener's new SYNs (the client retries, and finds the
    /// port closed: refused, never reset) and lets every segment with ACK set through: a handshake already
    /// half done completes and joins the accept queue, to be served with what is there (a drop-all filter
    /// also dropped those final ACKs, and such a client was reset when the listener closed). A socket
    /// filter sees the TCP header at offset 0; the flags are byte 13. TCP listeners only: a filter does
    /// not stop a unix socket's connections.
    /// </summary>
    internal static bool DropIncomingSyns(int listener)
    {
        ulong* program = stackalloc ulong[4];
        program[0] = Filter(0x30, 0, 0, 13);            // ldb [13]: the TCP flags
        program[1] = Filter(0x45, 0, 1, 0x10);          // jset #ACK: on to the next, else skip it
        program[2] = Filter(0x06, 0, 0, uint.MaxValue); // ret: keep the whole segment
        program[3] = Filter(0x06, 0, 0, 0);             // ret 0: drop it (a SYN)
        var filter = new SockFilterProgram { Length = 4, Instructions = program };
        return SetSockOptFilter(listener, SOL_SOCKET, SO_ATTACH_FILTER, &filter, sizeof(SockFilterProgram)) == 0;

        // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } as one little-endian 64-bit word (x86-64 and arm64).
        static ulong Filter(ushort code, byte jt, byte jf, uint k) => code | ((ulong)jt << 16) | ((ulong)jf << 24) | ((ulong)k << 32);
    }

    [LibraryImport(Libc, EntryPoint = "send", SetLastError = true)]
    internal static partial nint SendFlags(int fd, byte* buffer, nuint len, int flags);
}
