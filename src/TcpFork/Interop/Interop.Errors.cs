using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>errno values used by tcpfork (Linux's, the same on x86-64 and arm64: InteropLayoutTests).</summary>
internal enum Errno
{
    EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12,
    EACCES = 13, EINVAL = 22, ENFILE = 23, EMFILE = 24, EPIPE = 32, ENOSYS = 38, ENONET = 64,
    EPROTO = 71, ENOTSOCK = 88, ENOPROTOOPT = 92, EOPNOTSUPP = 95, EADDRINUSE = 98,
    EADDRNOTAVAIL = 99, ENETDOWN = 100, ENETUNREACH = 101, ECONNABORTED = 103, ECONNRESET = 104,
    ENOBUFS = 105, ENOTCONN = 107, ETIMEDOUT = 110, EHOSTDOWN = 112, EHOSTUNREACH = 113,
}

internal static partial class Interop
{
    /// <summary>The errno of the last P/Invoke made with SetLastError.</summary>
    internal static Errno LastError => (Errno)Marshal.GetLastPInvokeError();

    /// <summary>
    /// The one place EINTR is handled: true when <paramref name="result"/> is a failure caused by a
    /// signal, so the caller reissues the call (<c>while (Retry(r = call())) { }</c>).
    /// </summary>
    internal static bool Retry(long result) => result < 0 && LastError == Errno.EINTR;

    /// <summary>The one place errno becomes an exception.</summary>
    internal static SystemCallException Error(string call) => new(call, (int)LastError);

    /// <summary>Throws the last errno as a <see cref="SystemCallException"/> naming <paramref name="call"/>.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    internal static void Throw(string call) => throw Error(call);

    /// <summary>Returns <paramref name="result"/>, or throws the last errno when it is negative.</summary>
    internal static long Check(long result, string call)
    {
        if (result < 0)
        {
            Throw(call);
        }
        return result;
    }
}

internal static unsafe partial class Interop
{
    [LibraryImport(Libc, EntryPoint = "strerrordesc_np")]
    private static partial byte* StrErrorDesc(int errno);

    /// <summary>strerror text without allocating (glibc's static table).</summary>
    internal static ReadOnlySpan<byte> ErrorText(Errno errno)
    {
        byte* s = StrErrorDesc((int)errno);
        return s == null ? "unknown error"u8 : MemoryMarshal.CreateReadOnlySpanFromNullTerminated(s);
    }
}
