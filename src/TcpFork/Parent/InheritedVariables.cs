namespace TcpFork;

/// <summary>Variables addressed to the parent alone (from a service manager), which no child may inherit.</summary>
internal static class InheritedVariables
{
    /// <summary>
    /// Removes <paramref name="names"/> from the managed environment, which children's environments are
    /// built from, and from the C library's, which native code in a forked child reads.
    /// </summary>
    public static void Remove(string[] names)
    {
        foreach (string name in names)
        {
            Environment.SetEnvironmentVariable(name, null);
            Interop.UnsetEnv(name);
        }
    }
}
