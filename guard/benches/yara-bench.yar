// A rule set the size a site starts with (15 rules: scripts, droppers,
// executables, document exploits, web shells), for the YARA throughput
// figures in docs/guard.md §10. The five rules of examples/yara/import.yar
// and ten more of the same kind.

rule PowerShell_Download_Cradle : script downloader
{
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
    strings:
        $ps = "powershell" ascii wide nocase
        $enc = /\s-e(nc|ncodedcommand)?\s+[A-Za-z0-9+\/]{40,}/ ascii wide nocase
    condition:
        $ps and $enc
}

rule Script_Dropper_Shell : script dropper
{
    strings:
        $a = /(curl|wget)[^\n|]{1,200}\|\s*(ba|z|da)?sh\b/ ascii
    condition:
        $a
}

rule Windows_Executable_Inside : executable
{
    condition:
        uint16(0) == 0x5A4D and filesize > 64 and
        uint32(uint32(0x3C)) == 0x00004550
}

rule Windows_Script_Host : script
{
    strings:
        $a = "WScript.Shell" ascii wide nocase
        $b = "CreateObject" ascii wide nocase
        $c = ".Run" ascii wide nocase
    condition:
        all of them
}

rule ELF_Executable_Inside : executable
{
    condition:
        uint32(0) == 0x464C457F
}

rule Certutil_Decode : script downloader
{
    strings:
        $a = "certutil" ascii wide nocase
        $b = "-decode" ascii wide nocase
        $c = "-urlcache" ascii wide nocase
    condition:
        $a and ($b or $c)
}

rule Mshta_Or_Regsvr32_Remote : script
{
    strings:
        $a = /mshta(\.exe)?\s+(https?|javascript|vbscript):/ ascii wide nocase
        $b = /regsvr32(\.exe)?\s+\/s\s+\/n\s+\/u\s+\/i:https?:/ ascii wide nocase
    condition:
        any of them
}

rule PHP_Web_Shell : webshell
{
    strings:
        $php = "<?php" ascii nocase
        $e1 = /(eval|assert|system|passthru|shell_exec)\s*\(\s*\$_(GET|POST|REQUEST|COOKIE)/ ascii nocase
        $e2 = "base64_decode($_" ascii nocase
    condition:
        $php and any of ($e*)
}

rule JSP_Web_Shell : webshell
{
    strings:
        $a = "Runtime.getRuntime().exec(request.getParameter" ascii
        $b = "<%@ page import=\"java.io.*\"" ascii
    condition:
        $a or ($b and $a)
}

rule Office_Auto_Macro : document macro
{
    strings:
        $a = "AutoOpen" ascii wide nocase
        $b = "Document_Open" ascii wide nocase
        $c = "Workbook_Open" ascii wide nocase
        $shell = "Shell(" ascii wide nocase
    condition:
        any of ($a, $b, $c) and $shell
}

rule RTF_Object_Exploit : document exploit
{
    strings:
        $rtf = "{\\rt" ascii
        $obj = "\\objdata" ascii nocase
        $eq = "0002CE02" ascii nocase
    condition:
        $rtf at 0 and $obj and $eq
}

rule HTA_Application : script
{
    strings:
        $a = "<HTA:APPLICATION" ascii wide nocase
    condition:
        $a
}

rule Reverse_Shell_Oneliner : script
{
    strings:
        $a = /bash\s+-i\s+>&\s*\/dev\/tcp\/[0-9.]{7,15}\/[0-9]{1,5}/ ascii
        $b = "socket.socket(socket.AF_INET,socket.SOCK_STREAM)" ascii
        $c = "nc -e /bin/sh" ascii
    condition:
        any of them
}

rule Ferry_Test_Marker : test
{
    strings:
        $a = "FERRY-TEST-DROPPER-7f3a9c" ascii wide
    condition:
        $a
}
