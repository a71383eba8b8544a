using System.Runtime.InteropServices;

namespace TcpFork.Cli.Bench;

/// <summary>
/// The system calls only the load generator makes — a client's connect(2) and timeouts, and the
/// vmsplice(2) path that sends its pattern by reference — kept here so that the library's interop
/// serves the server only. Calls the server makes too (socket, read, send, splice, pipe2, rlimits)
/// come from the library's <see cref="Interop"/>; layouts and constants are checked against the C
/// headers in InteropLayoutTests.
/// </summary>
internal static unsafe partial class BenchInterop
{
    internal const int SO_RCVTIMEO = 20, SO_SNDTIMEO = 21;
    internal const int ECONNREFUSED = 111;
    internal const int F_SETPIPE_SZ = 1031;

    /// <summary>sizeof(struct timeval): two longs on 64-bit Linux.</summary>
    internal const int TimevalSize = 16;

    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [LibraryImport(Interop.Libc, EntryPoint = "connect", SetLastError = true)]
    private static partial int ConnectOnce(int fd, SockAddr* addr, int len);

    [LibraryImport(Interop.Libc, EntryPoint = "setsockopt", SetLastError = true)]
    private static partial int SetSockOpt(int fd, int level, int name, long* value, int len);

    [LibraryImport(Interop.Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int FcntlOnce(int fd, int command, int argument);

    [LibraryImport(Interop.Libc, EntryPoint = "vmsplice", SetLastError = true)]
    private static partial nint VmspliceOnce(int fd, IoVec* iov, nuint count, uint flags);

    /// <summary>connect(2) on a blocking socket, retried on EINTR.</summary>
    internal static int Connect(int fd, SockAddr* addr, int len)
    {
        int r;
        while (Interop.Retry(r = ConnectOnce(fd, addr, len))) { }
        return r;
    }

    /// <summary>SO_RCVTIMEO and SO_SNDTIMEO: blocking calls fail with EAGAIN after <paramref name="milliseconds"/>.</summary>
    internal static void SetTimeouts(int fd, int milliseconds)
    {
        long* tv = stackalloc long[2];
        tv[0] = milliseconds / 1000;
        tv[1] = milliseconds % 1000 * 1000;
        SetSockOpt(fd, Interop.SOL_SOCKET, SO_RCVTIMEO, tv, TimevalSize);
        SetSockOpt(fd, Interop.SOL_SOCKET, SO_SNDTIMEO, tv, TimevalSize);
    }

    /// <summary>Sets a pipe's capacity (F_SETPIPE_SZ), retried on EINTR; returns the capacity granted, or -1.</summary>
    internal static int SetPipeSize(int fd, int bytes)
    {
        int r;
        while (Interop.Retry(r = FcntlOnce(fd, F_SETPIPE_SZ, bytes))) { }
        return r;
    }

    /// <summary>
    /// vmsplice(2): puts references to the pages of <paramref name="data"/> into the pipe, without copying
    /// them; the memory must stay unchanged (and unmoved) until the pipe has been drained. Retried on EINTR.
    /// </summary>
    internal static nint Vmsplice(int pipeWrite, byte* data, nuint len)
    {
        IoVec iov = new() { Base = data, Length = len };
        nint r;
        while (Interop.Retry(r = VmspliceOnce(pipeWrite, &iov, 1, 0))) { }
        return r;
    }
}
