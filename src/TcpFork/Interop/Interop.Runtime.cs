using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// Entry points of the NativeAOT runtime itself, linked into the same executable. <see cref="Runtime"/>
/// is not a real library: buildTransitive/TcpFork.props lists it as a DirectPInvoke, so the linker binds
/// these names to the runtime's own symbols. Without that item a call throws DllNotFoundException,
/// which <see cref="IsRuntimeLinked"/> finds out in the parent, before any fork.
/// </summary>
internal static partial class Interop
{
    internal const string Runtime = "TcpForkNativeAotRuntime";

    /// <summary>
    /// The managed loop of NativeAOT's finalizer thread (System.Runtime.__Finalizer.ProcessFinalizers,
    /// exported under this name for the runtime's FinalizerStart). It waits for the GC's finalization
    /// requests, runs finalizers and signals GC.WaitForPendingFinalizers; it never returns.
    /// </summary>
    [LibraryImport(Runtime, EntryPoint = "ProcessFinalizers")]
    internal static partial void ProcessFinalizers();

    /// <summary>getpid(2) bound through <see cref="Runtime"/>: succeeds exactly when that name is linked.</summary>
    [LibraryImport(Runtime, EntryPoint = "getpid")]
    private static partial int GetPidThroughRuntime();

    /// <summary>True when the runtime's entry points are bound (the DirectPInvoke item is in the build).</summary>
    internal static bool IsRuntimeLinked()
    {
        try
        {
            return GetPidThroughRuntime() > 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }
}
