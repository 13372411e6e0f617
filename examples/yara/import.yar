// YARA rules for data coming in (examples/policy.toml, [profile.reference-import]).
//
// The guard runs them on every package and on every archive member (zip
// members, the parts of Word and Excel documents), decompressed. Matches are
// reported as import:RULE with the rule's tags, never with what matched.
// These are examples of the kind of rule a site writes for reference data,
// which should hold no scripts at all: keep them short, anchor them on
// strings of four bytes or more (short atoms make every scan slow), and test
// them with `ferryctl inspect` before signing the policy.

rule PowerShell_Download_Cradle : script downloader
{
    meta:
        description = "PowerShell that downloads and runs code (IEX + WebClient / Invoke-WebRequest)"
    strings:
        $iex1 = "IEX" ascii wide nocase
        $iex2 = "Invoke-Expression" ascii wide nocase
        $dl1 = "DownloadString" ascii wide nocase
        $dl2 = "DownloadFile" ascii wide nocase
        $dl3 = "Invoke-WebRequest" ascii wide nocase
        $dl4 = "Net.WebClient" ascii wide nocase
    condition:
        any of ($iex*) and any of ($dl*)
}

rule PowerShell_Encoded_Command : script
{
    meta:
        description = "powershell started with a base64-encoded command"
    strings:
        $ps = "powershell" ascii wide nocase
        $enc = /\s-e(nc|ncodedcommand)?\s+[A-Za-z0-9+\/]{40,}/ ascii wide nocase
    condition:
        $ps and $enc
}

rule Script_Dropper_Shell : script dropper
{
    meta:
        description = "a shell one-liner that fetches and runs a script"
    strings:
        $a = /(curl|wget)[^\n|]{1,200}\|\s*(ba|z|da)?sh\b/ ascii
    condition:
        $a
}

rule Windows_Executable_Inside : executable
{
    meta:
        description = "a Windows executable (MZ header with a PE signature where the header says)"
    condition:
        uint16(0) == 0x5A4D and filesize > 64 and
        uint32(uint32(0x3C)) == 0x00004550
}

rule Windows_Script_Host : script
{
    meta:
        description = "VBScript or JScript run through the Windows Script Host"
    strings:
        $a = "WScript.Shell" ascii wide nocase
        $b = "CreateObject" ascii wide nocase
        $c = ".Run" ascii wide nocase
    condition:
        all of them
}
