namespace TcpFork;

/// <summary>
/// Native entry points, one family per file (Interop.Socket.cs, Interop.Fork.cs, …), all from glibc.
/// Wrappers that can be interrupted retry through <see cref="Interop.Retry"/>; failures become
/// <see cref="SystemCallException"/> through <see cref="Interop.Throw(string)"/>.
/// </summary>
internal static partial class Interop
{
    internal const string Libc = "libc";
}
