"""What the SMS tests share: the order text (two UCS-2 parts, a character outside the BMP),
a feedback engine stand-in, and the phones of the fan-out."""
from twisted.internet import defer

ORDER = ("【县应急指挥中心】命令0427：请立即集合队伍，携带破拆与照明装备，30分钟内到达城关镇东街12号集结点，"
         "到达后回复“0427 到达”，指挥长张𠀀三。")
assert 70 < len(ORDER) <= 134           # two UCS-2 parts


class FakeSink:
    def __init__(self):
        self.received = []

    def sms_received(self, sms):
        self.received.append(sms)
        return defer.succeed(None)


def phone(i):
    return f"+86139{i:08d}"
