using System.Runtime.InteropServices;

namespace TcpFork;

internal static unsafe partial class Interop
{
    internal const uint SPLICE_F_MOVE = 1;

    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [LibraryImport(Libc, EntryPoint = "splice", SetLastError = true)]
    private static partial nint SpliceOnce(int fdIn, long* offIn, int fdOut, long* offOut, nuint len, uint flags);

    [LibraryImport(Libc, EntryPoint = "vmsplice", SetLastError = true)]
    private static partial nint VmspliceOnce(int fd, IoVec* iov, nuint count, uint flags);

    /// <summary>splice(2) between a socket and a pipe, retried on EINTR.</summary>
    internal static nint Splice(int fdIn, int fdOut, nuint len)
    {
        nint r;
        while (Retry(r = SpliceOnce(fdIn, null, fdOut, null, len, SPLICE_F_MOVE))) { }
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
        while (Retry(r = VmspliceOnce(pipeWrite, &iov, 1, 0))) { }
        return r;
    }
}
