using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>A failed system call: the call's name and its errno.</summary>
public sealed class SystemCallException : IOException
{
    internal SystemCallException(string call, int errno)
        : base($"{call}: {Describe(errno)}", errno)
    {
        Call = call;
        Errno = errno;
    }

    /// <summary>The system call that failed, e.g. <c>bind</c>.</summary>
    public string Call { get; }

    /// <summary>The errno it failed with.</summary>
    public int Errno { get; }

    /// <summary>The C library's text for an errno (strerror).</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
