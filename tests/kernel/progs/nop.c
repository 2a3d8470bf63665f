/* nop: exit 0 without a single system call beyond exec and exit. */
int main(void)
{
	return 0;
}
