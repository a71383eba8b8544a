using System.Diagnostics;

namespace TcpFork.Tests;

/// <summary>Runs a command to completion with a time limit.</summary>
public static class Run
{
    public static (int Code, string Stdout, string Stderr) Command(string exe, params string[] args) => Command(TimeSpan.FromSeconds(30), exe, args);

    public static (int Code, string Stdout, string Stderr) Command(TimeSpan limit, string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using Process p = Process.Start(psi)!;
        Task<string> o = p.StandardOutput.ReadToEndAsync();
        Task<string> e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{exe} {string.Join(' ', args)} did not exit in {limit.TotalSeconds} s");
        }
        p.WaitForExit();
        return (p.ExitCode, o.Result, e.Result);
    }

    /// <summary>The full path of a program on PATH, or null.</summary>
    public static string? Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);
}
